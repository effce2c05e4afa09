"""CloudFormation ``Rules`` evaluated locally, for template tests: which rules a set of
parameter values breaks, as CloudFormation would before creating anything.

Rule-specific functions (``Fn::Contains``, ``Fn::EachMemberEquals``, ``Fn::EachMemberIn``)
are added to the local stack's :class:`~sms_gateway.local.template.Resolver`, which already
evaluates ``Ref``, ``Fn::Equals``, ``Fn::Not``, ``Fn::And`` and ``Fn::Or`` the way the rules
use them (AWS CloudFormation User Guide, "Rules"; a ``Ref`` to a CommaDelimitedList is a
list of strings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sms_gateway.local.template import Resolver, SamTemplate, TemplateError

# Parameter values a deployment must give (the rest at their defaults) for every rule to hold.
DEPLOYABLE = {
    "DatabaseHost": "sms.abc123.eu-west-1.rds.amazonaws.com",
    "DatabaseSecretArn": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:rds!db-1-AbCd",
    "VpcSubnetIds": "subnet-1,subnet-2",
    "VpcSecurityGroupIds": "sg-1",
}


class RuleResolver(Resolver):
    """A :class:`Resolver` that also knows the functions only ``Rules`` may use."""

    def _intrinsic(self, key: str, argument: Any) -> Any:
        if key in ("Fn::Contains", "Fn::EachMemberEquals", "Fn::EachMemberIn"):
            if not isinstance(argument, list) or len(argument) != 2:
                raise TemplateError(f"malformed {key} {argument!r}")
            items = [str(item) for item in self.resolve(argument[0])]
            other = self.resolve(argument[1])
            if key == "Fn::Contains":
                return str(other) in items
            if key == "Fn::EachMemberEquals":
                return all(item == str(other) for item in items)
            return all(item in {str(value) for value in other} for item in items)
        return super()._intrinsic(key, argument)


def _failing(template: SamTemplate, overrides: Mapping[str, str]) -> list[tuple[str, str]]:
    """(rule name, AssertDescription) of every failing assertion, in template order; a rule
    whose ``RuleCondition`` is false is not checked."""
    resolver = RuleResolver(template, parameter_overrides=overrides)
    failing = []
    for name, rule in (template.document.get("Rules") or {}).items():
        if "RuleCondition" in rule and not resolver.resolve(rule["RuleCondition"]):
            continue
        failing += [
            (name, str(a["AssertDescription"]))
            for a in rule["Assertions"]
            if resolver.resolve(a["Assert"]) is not True
        ]
    return failing


def broken_rules(template: SamTemplate, overrides: Mapping[str, str]) -> list[str]:
    """The names of the template's rules whose assertions fail for these parameter values
    (the rest at their defaults), in template order, each once."""
    return list(dict.fromkeys(name for name, _ in _failing(template, overrides)))


def rule_failures(template: SamTemplate, overrides: Mapping[str, str]) -> list[str]:
    """The ``AssertDescription`` of every assertion these parameter values fail (the
    message CloudFormation shows), in template order."""
    return [description for _, description in _failing(template, overrides)]
