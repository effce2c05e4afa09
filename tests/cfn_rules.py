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


def broken_rules(template: SamTemplate, overrides: Mapping[str, str]) -> list[str]:
    """The names of the template's rules whose assertions fail for these parameter values
    (the rest at their defaults), in template order; a rule whose ``RuleCondition`` is false
    is not checked."""
    resolver = RuleResolver(template, parameter_overrides=overrides)
    broken = []
    for name, rule in (template.document.get("Rules") or {}).items():
        if "RuleCondition" in rule and not resolver.resolve(rule["RuleCondition"]):
            continue
        if not all(resolver.resolve(a["Assert"]) is True for a in rule["Assertions"]):
            broken.append(name)
    return broken
