"""Read ``template.yaml`` the way CloudFormation and SAM would, for the local stack.

Three pieces:

- :func:`load_template`: YAML with CloudFormation's short tags (``!Ref``, ``!GetAtt``, ``!Sub``,
  ``!If``, ``!Join``, ...) turned into their long JSON forms (``{"Ref": ...}``,
  ``{"Fn::GetAtt": [...]}``), so the rest of the code sees one shape.
- :class:`SamTemplate`: the parsed document plus a SAM-aware view of its functions
  (:class:`FunctionSpec`, with ``Globals`` merged the way SAM merges them, and their ``Api`` and
  ``SQS`` events).
- :class:`Resolver`: evaluates intrinsic functions against parameter values (overrides, else
  ``Default``), pseudo parameters, conditions and the local values of resources (queue URLs,
  table names) that the caller fills in as it creates them.

Nothing here talks to AWS. Only what the local stack needs is supported; anything else raises
:class:`TemplateError` naming the construct.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

__all__ = [
    "NO_VALUE",
    "ApiRoute",
    "FunctionSpec",
    "Resolver",
    "SamTemplate",
    "SqsEventSource",
    "TemplateError",
    "UnresolvableError",
    "load_template",
]


class TemplateError(Exception):
    """The template is malformed, or uses a construct the local stack does not support."""


class UnresolvableError(TemplateError):
    """A reference has no local value (yet): an unknown parameter, resource or attribute.

    While resources are being created this only means "try again once more exist".
    """


class _NoValue:
    """The value of ``AWS::NoValue``: the property or list item it stands in is removed."""

    _instance: _NoValue | None = None

    def __new__(cls) -> _NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Final = _NoValue()

# Short tag -> long form key. Every other `!X` becomes `Fn::X`.
_SPECIAL_TAGS: Final = {"Ref": "Ref", "Condition": "Condition"}


# libyaml's parser when PyYAML was built with it (the wheels are): the same documents, about
# ten times faster than the pure-Python one, which took a tenth of a second per template.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CfnLoader(_SafeLoader):  # type: ignore[misc]
    """SafeLoader that understands CloudFormation's short-form intrinsic tags."""


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    key = _SPECIAL_TAGS.get(tag_suffix, f"Fn::{tag_suffix}")
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if key == "Fn::GetAtt":
            # `!GetAtt Res.Attr` is `{"Fn::GetAtt": ["Res", "Attr"]}`; attributes may hold dots.
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - yaml has no other node kinds
        raise TemplateError(f"unsupported node for !{tag_suffix}")
    return {key: value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template file (YAML or JSON) into plain Python data.

    Short tags become long forms: ``!Ref X`` -> ``{"Ref": "X"}``, ``!GetAtt A.B`` ->
    ``{"Fn::GetAtt": ["A", "B"]}``, ``!Sub s`` -> ``{"Fn::Sub": "s"}``, ``!Condition C`` ->
    ``{"Condition": "C"}``, any other ``!X v`` -> ``{"Fn::X": v}``.

    Raises:
        FileNotFoundError: no file at ``path``.
        TemplateError: the document is not a mapping with a ``Resources`` mapping.
    """
    with path.open(encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources mapping)")
    return document


@dataclass(frozen=True)
class ApiRoute:
    """One ``Type: Api`` event of a function: an HTTP method and a path template.

    ``method`` is upper case, ``ANY`` matching every method. ``path`` is API Gateway's resource
    path, e.g. ``/v1/messages/{message_id}``; ``{name+}`` is a greedy parameter.
    """

    function: str
    event: str
    method: str
    path: str

    @property
    def segments(self) -> tuple[str, ...]:
        """The path's segments, without empty ones (``/a/{b}`` -> ``("a", "{b}")``)."""
        return tuple(part for part in self.path.split("/") if part)

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Sort key, most specific first when sorted descending: literal segments, then
        non-greedy parameters, then a concrete method over ``ANY``."""
        literal = sum(1 for part in self.segments if not part.startswith("{"))
        params = sum(
            1 for part in self.segments if part.startswith("{") and not part.endswith("+}")
        )
        return (literal, params, 0 if self.method == "ANY" else 1)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters if ``method`` and ``path`` (already URL-decoded, no query) match,
        else ``None``. ``{}`` means a match without parameters."""
        if self.method not in ("ANY", method.upper()):
            return None
        return self.match_path(path)

    def match_path(self, path: str) -> dict[str, str] | None:
        """Like :meth:`match`, ignoring the method.

        ``path`` must start with ``/``; one trailing ``/`` is ignored. A path with an empty
        segment (``/v1//messages/x``) matches nothing: no API Gateway resource has an empty
        path part, so API Gateway answers 403 Missing Authentication Token for it.
        """
        wanted = self.segments
        if not path.startswith("/"):
            return None
        inner = path[1:].removesuffix("/") if path != "/" else ""
        given = inner.split("/") if inner else []
        if "" in given:
            return None
        params: dict[str, str] = {}
        for index, part in enumerate(wanted):
            if part.startswith("{") and part.endswith("+}"):
                rest = given[index:]
                if not rest:
                    return None
                params[part[1:-2]] = "/".join(rest)
                return params
            if index >= len(given):
                return None
            if part.startswith("{") and part.endswith("}"):
                params[part[1:-1]] = given[index]
            elif part != given[index]:
                return None
        return params if len(given) == len(wanted) else None


@dataclass(frozen=True)
class SqsEventSource:
    """One ``Type: SQS`` event of a function (an event source mapping).

    ``queue`` is the unresolved ``Queue`` property (usually ``{"Fn::GetAtt": [Q, "Arn"]}``).
    ``batching_window_seconds`` is ``MaximumBatchingWindowInSeconds`` (0 when absent).
    """

    function: str
    event: str
    queue: Any
    batch_size: int = 10
    batching_window_seconds: int = 0
    report_batch_item_failures: bool = False
    enabled: bool = True


@dataclass(frozen=True)
class FunctionSpec:
    """An ``AWS::Serverless::Function`` with SAM ``Globals`` merged in.

    ``environment`` holds the unresolved ``Environment.Variables`` (Globals first, the
    function's own on top, as SAM merges maps). ``timeout`` is seconds, ``memory_size`` MB.
    """

    logical_id: str
    code_uri: str
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    environment: Mapping[str, Any]
    api_routes: tuple[ApiRoute, ...] = ()
    sqs_sources: tuple[SqsEventSource, ...] = ()


# SAM's default Lambda timeout and memory when neither Globals nor the function sets one.
_SAM_DEFAULT_TIMEOUT: Final = 3
_SAM_DEFAULT_MEMORY: Final = 128


@dataclass
class SamTemplate:
    """A parsed SAM template and the views of it the local stack needs.

    Build one with :meth:`from_file`; ``document`` is what :func:`load_template` returns.
    """

    document: Mapping[str, Any]
    path: Path | None = None

    @classmethod
    def from_file(cls, path: Path) -> SamTemplate:
        """Load ``path`` (see :func:`load_template` for the errors raised)."""
        return cls(load_template(path), path)

    @property
    def parameters(self) -> Mapping[str, Mapping[str, Any]]:
        """``Parameters``: name -> declaration (``Type``, ``Default``, ``AllowedValues``...)."""
        return dict(self.document.get("Parameters") or {})

    @property
    def conditions(self) -> Mapping[str, Any]:
        """``Conditions``: name -> unresolved condition expression."""
        return dict(self.document.get("Conditions") or {})

    @property
    def resources(self) -> Mapping[str, Mapping[str, Any]]:
        """``Resources``: logical id -> ``{"Type": ..., "Properties": ...}``."""
        return dict(self.document["Resources"])

    @property
    def function_globals(self) -> Mapping[str, Any]:
        """``Globals.Function`` (empty when absent)."""
        globals_ = self.document.get("Globals") or {}
        return dict(globals_.get("Function") or {})

    def resources_of_type(self, resource_type: str) -> dict[str, Mapping[str, Any]]:
        """Logical id -> resource, for every resource of ``resource_type`` in file order."""
        return {
            logical_id: resource
            for logical_id, resource in self.resources.items()
            if resource.get("Type") == resource_type
        }

    def functions(self) -> list[FunctionSpec]:
        """Every ``AWS::Serverless::Function``, with ``Globals.Function`` merged.

        Raises:
            TemplateError: a function has no ``CodeUri`` or ``Handler`` (after Globals), or an
                ``Api``/``SQS`` event lacks its required properties.
        """
        globals_ = self.function_globals
        specs: list[FunctionSpec] = []
        for logical_id, resource in self.resources_of_type("AWS::Serverless::Function").items():
            props = dict(resource.get("Properties") or {})
            merged = {**globals_, **props}
            code_uri = merged.get("CodeUri")
            handler = merged.get("Handler")
            if not isinstance(code_uri, str) or not isinstance(handler, str):
                raise TemplateError(f"{logical_id}: CodeUri and Handler must be plain strings")
            environment: dict[str, Any] = {}
            for source in (globals_, props):
                variables = (source.get("Environment") or {}).get("Variables") or {}
                environment.update(variables)
            routes: list[ApiRoute] = []
            sources: list[SqsEventSource] = []
            for event_name, event in (props.get("Events") or {}).items():
                event_type = event.get("Type")
                event_props = event.get("Properties") or {}
                if event_type == "Api":
                    try:
                        routes.append(
                            ApiRoute(
                                function=logical_id,
                                event=event_name,
                                method=str(event_props["Method"]).upper(),
                                path=str(event_props["Path"]),
                            )
                        )
                    except KeyError as missing:
                        raise TemplateError(
                            f"{logical_id}.Events.{event_name}: Api event without {missing}"
                        ) from None
                elif event_type == "SQS":
                    if "Queue" not in event_props:
                        raise TemplateError(
                            f"{logical_id}.Events.{event_name}: SQS event without Queue"
                        )
                    sources.append(
                        SqsEventSource(
                            function=logical_id,
                            event=event_name,
                            queue=event_props["Queue"],
                            batch_size=int(event_props.get("BatchSize", 10)),
                            batching_window_seconds=int(
                                event_props.get("MaximumBatchingWindowInSeconds", 0)
                            ),
                            report_batch_item_failures="ReportBatchItemFailures"
                            in (event_props.get("FunctionResponseTypes") or []),
                            enabled=bool(event_props.get("Enabled", True)),
                        )
                    )
            specs.append(
                FunctionSpec(
                    logical_id=logical_id,
                    code_uri=code_uri,
                    handler=handler,
                    runtime=str(merged.get("Runtime", "")),
                    timeout=int(merged.get("Timeout", _SAM_DEFAULT_TIMEOUT)),
                    memory_size=int(merged.get("MemorySize", _SAM_DEFAULT_MEMORY)),
                    environment=environment,
                    api_routes=tuple(routes),
                    sqs_sources=tuple(sources),
                )
            )
        return specs


_SUB_VARIABLE: Final = re.compile(r"\$\{([^}]*)\}")


@dataclass
class Resolver:
    """Evaluates CloudFormation intrinsic functions with local values.

    Args:
        template: the template whose ``Parameters``, ``Conditions`` and ``Mappings`` apply.
        parameter_overrides: parameter name -> value, taking the place of ``Default``
            (checked against ``AllowedValues``).
        pseudo_parameters: ``AWS::Region``, ``AWS::AccountId``, ``AWS::StackName`` ... values;
            ``AWS::NoValue`` is always :data:`NO_VALUE`.
        refs: logical id -> the value of ``!Ref`` (queue URL, table name, function name).
            Mutable: the caller adds resources as it creates them.
        attributes: ``(logical id, attribute)`` -> the value of ``!GetAtt``. Mutable too.

    Supported: ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::Select``,
    ``Fn::Split``, ``Fn::If``, ``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``,
    ``Condition``, ``Fn::FindInMap``, ``Fn::Base64``. Values follow CloudFormation: a ``Ref`` to
    a ``Number`` parameter is a string, to a ``CommaDelimitedList`` a list of strings.
    """

    template: SamTemplate
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    pseudo_parameters: Mapping[str, Any] = field(default_factory=dict)
    refs: MutableMapping[str, Any] = field(default_factory=dict)
    attributes: MutableMapping[tuple[str, str], Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.parameter_overrides) - set(self.template.parameters)
        if unknown:
            raise TemplateError(f"unknown parameter(s): {', '.join(sorted(unknown))}")

    def parameter(self, name: str) -> Any:
        """The value of parameter ``name``: the override, else its ``Default``.

        Raises:
            UnresolvableError: no such parameter, or neither an override nor a Default.
            TemplateError: the value is not one of its ``AllowedValues``.
        """
        declaration = self.template.parameters.get(name)
        if declaration is None:
            raise UnresolvableError(f"unknown parameter {name!r}")
        if name in self.parameter_overrides:
            raw: Any = self.parameter_overrides[name]
        elif "Default" in declaration:
            raw = declaration["Default"]
        else:
            raise UnresolvableError(f"parameter {name!r} has no Default and no override")
        allowed = declaration.get("AllowedValues")
        if allowed is not None and str(raw) not in {str(value) for value in allowed}:
            raise TemplateError(f"parameter {name!r}: {raw!r} is not one of {allowed}")
        kind = str(declaration.get("Type", "String"))
        if kind == "CommaDelimitedList" or kind.startswith("List<"):
            if isinstance(raw, list):
                return [str(item) for item in raw]
            return [item.strip() for item in str(raw).split(",")]
        return _as_cfn_string(raw)

    def ref(self, name: str) -> Any:
        """The value of ``{"Ref": name}`` (parameter, pseudo parameter or resource).

        Raises:
            UnresolvableError: no local value for ``name``.
        """
        if name == "AWS::NoValue":
            return NO_VALUE
        if name.startswith("AWS::"):
            if name not in self.pseudo_parameters:
                raise UnresolvableError(f"pseudo parameter {name} has no local value")
            return self.pseudo_parameters[name]
        if name in self.template.parameters:
            return self.parameter(name)
        if name in self.refs:
            return self.refs[name]
        raise UnresolvableError(f"!Ref {name}: no local value")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        """The value of ``{"Fn::GetAtt": [logical_id, attribute]}``.

        Raises:
            UnresolvableError: no local value for that attribute.
        """
        try:
            return self.attributes[(logical_id, attribute)]
        except KeyError:
            raise UnresolvableError(f"!GetAtt {logical_id}.{attribute}: no local value") from None

    def condition(self, name: str) -> bool:
        """Evaluate the template condition ``name``.

        Raises:
            TemplateError: no such condition, or it does not evaluate to a boolean.
        """
        if name not in self.template.conditions:
            raise TemplateError(f"unknown condition {name!r}")
        value = self.resolve(self.template.conditions[name])
        if not isinstance(value, bool):
            raise TemplateError(f"condition {name!r} is not a boolean: {value!r}")
        return value

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function evaluated, recursively.

        ``AWS::NoValue`` removes the mapping key or list item it stands in; at the top level it
        is returned as :data:`NO_VALUE`.

        Raises:
            UnresolvableError: a reference has no local value.
            TemplateError: an unsupported or malformed intrinsic function.
        """
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, argument),) = value.items()
                if key == "Ref" or key == "Condition" or key.startswith("Fn::"):
                    return self._intrinsic(key, argument)
            resolved_map = {key: self.resolve(item) for key, item in value.items()}
            return {key: item for key, item in resolved_map.items() if item is not NO_VALUE}
        if isinstance(value, list):
            resolved_list = [self.resolve(item) for item in value]
            return [item for item in resolved_list if item is not NO_VALUE]
        return value

    def _intrinsic(self, key: str, argument: Any) -> Any:
        handler = _INTRINSICS.get(key)
        if handler is None:
            raise TemplateError(f"{key} is not supported by the local stack")
        return handler(self, argument)

    # -- intrinsic functions, in CloudFormation's argument shapes -------------------------

    def _fn_ref(self, argument: Any) -> Any:
        return self.ref(str(self.resolve(argument)))

    def _fn_condition(self, argument: Any) -> Any:
        return self.condition(str(argument))

    def _fn_get_att(self, argument: Any) -> Any:
        parts = argument.split(".", 1) if isinstance(argument, str) else self.resolve(argument)
        if not isinstance(parts, list) or len(parts) != 2:
            raise TemplateError(f"malformed Fn::GetAtt {argument!r}")
        return self.get_att(str(parts[0]), str(parts[1]))

    def _fn_sub(self, argument: Any) -> Any:
        if isinstance(argument, str):
            text, variables = argument, {}
        elif isinstance(argument, list) and len(argument) == 2 and isinstance(argument[0], str):
            text, variables = argument[0], self.resolve(argument[1])
        else:
            raise TemplateError(f"malformed Fn::Sub {argument!r}")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                found = variables[name]
            elif "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                found = self.get_att(logical_id, attribute)
            else:
                found = self.ref(name)
            if isinstance(found, list) or found is NO_VALUE:
                raise TemplateError(f"Fn::Sub: ${{{name}}} is not a string")
            return _as_cfn_string(found)

        return _SUB_VARIABLE.sub(substitute, text)

    def _fn_join(self, argument: Any) -> Any:
        delimiter, items = self._pair(argument, "Fn::Join")
        items = self.resolve(items)
        if not isinstance(items, list):
            raise TemplateError(f"Fn::Join needs a list, got {items!r}")
        return str(self.resolve(delimiter)).join(_as_cfn_string(item) for item in items)

    def _fn_select(self, argument: Any) -> Any:
        index, items = self._pair(argument, "Fn::Select")
        items = self.resolve(items)
        position = int(self.resolve(index))
        if not isinstance(items, list) or not 0 <= position < len(items):
            raise TemplateError(f"Fn::Select index {position} out of range of {items!r}")
        return items[position]

    def _fn_split(self, argument: Any) -> Any:
        delimiter, text = self._pair(argument, "Fn::Split")
        return str(self.resolve(text)).split(str(self.resolve(delimiter)))

    def _fn_if(self, argument: Any) -> Any:
        if not isinstance(argument, list) or len(argument) != 3:
            raise TemplateError(f"malformed Fn::If {argument!r}")
        name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(str(name)) else when_false)

    def _fn_equals(self, argument: Any) -> Any:
        left, right = self._pair(argument, "Fn::Equals")
        return _as_cfn_string(self.resolve(left)) == _as_cfn_string(self.resolve(right))

    def _fn_not(self, argument: Any) -> Any:
        if not isinstance(argument, list) or len(argument) != 1:
            raise TemplateError(f"malformed Fn::Not {argument!r}")
        return not self._boolean(argument[0])

    def _fn_and(self, argument: Any) -> Any:
        return all(self._boolean(item) for item in self._list(argument, "Fn::And"))

    def _fn_or(self, argument: Any) -> Any:
        return any(self._boolean(item) for item in self._list(argument, "Fn::Or"))

    def _fn_find_in_map(self, argument: Any) -> Any:
        if not isinstance(argument, list) or len(argument) != 3:
            raise TemplateError(f"malformed Fn::FindInMap {argument!r}")
        map_name, top, second = (str(self.resolve(part)) for part in argument)
        try:
            return self.resolve(self.template.document["Mappings"][map_name][top][second])
        except KeyError:
            raise TemplateError(f"Fn::FindInMap {map_name}/{top}/{second}: no such key") from None

    def _fn_base64(self, argument: Any) -> Any:
        return base64.b64encode(str(self.resolve(argument)).encode("utf-8")).decode("ascii")

    def _boolean(self, expression: Any) -> bool:
        value = self.resolve(expression)
        if not isinstance(value, bool):
            raise TemplateError(f"not a condition: {expression!r}")
        return value

    @staticmethod
    def _pair(argument: Any, name: str) -> tuple[Any, Any]:
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError(f"malformed {name} {argument!r}")
        return argument[0], argument[1]

    @staticmethod
    def _list(argument: Any, name: str) -> Iterator[Any]:
        if not isinstance(argument, list):
            raise TemplateError(f"malformed {name} {argument!r}")
        return iter(argument)


_INTRINSICS: Final = {
    "Ref": Resolver._fn_ref,
    "Condition": Resolver._fn_condition,
    "Fn::GetAtt": Resolver._fn_get_att,
    "Fn::Sub": Resolver._fn_sub,
    "Fn::Join": Resolver._fn_join,
    "Fn::Select": Resolver._fn_select,
    "Fn::Split": Resolver._fn_split,
    "Fn::If": Resolver._fn_if,
    "Fn::Equals": Resolver._fn_equals,
    "Fn::Not": Resolver._fn_not,
    "Fn::And": Resolver._fn_and,
    "Fn::Or": Resolver._fn_or,
    "Fn::FindInMap": Resolver._fn_find_in_map,
    "Fn::Base64": Resolver._fn_base64,
}


def _as_cfn_string(value: Any) -> str:
    """A scalar as CloudFormation renders it in strings (``True`` -> ``"true"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
