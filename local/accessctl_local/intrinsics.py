"""CloudFormation intrinsic functions, resolved against a deployed (local) stack.

Supports what SAM's output and hand-written templates commonly use: Ref, Fn::GetAtt, Fn::Sub (both
forms), Fn::Join, Fn::Select, Fn::Split, Fn::If with Conditions (Fn::Equals/Not/And/Or,
Condition), Fn::FindInMap, Fn::Base64, Fn::GetAZs. Anything else raises ``UnsupportedIntrinsic``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from typing import Any

NO_VALUE = object()  # AWS::NoValue: the enclosing key / list item disappears
_SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


class UnsupportedIntrinsic(ValueError):
    pass


class Resolver:
    """Resolve intrinsics given parameters, pseudo parameters and a resource lookup.

    ``ref(logical_id)`` and ``get_att(logical_id, attribute)`` answer for resources.
    """

    def __init__(
        self,
        parameters: dict[str, Any],
        pseudo: dict[str, Any],
        ref: Callable[[str], Any],
        get_att: Callable[[str, str], Any],
        conditions: dict[str, Any] | None = None,
        mappings: dict[str, Any] | None = None,
    ) -> None:
        self._parameters = parameters
        self._pseudo = pseudo
        self._ref = ref
        self._get_att = get_att
        self._condition_defs = conditions or {}
        self._mappings = mappings or {}
        self._condition_values: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._condition_values:
            self._condition_values[name] = bool(self.resolve(self._condition_defs[name]))
        return self._condition_values[name]

    def lookup(self, name: str) -> Any:
        """Value of ``Ref: name`` (parameter, pseudo parameter or resource)."""
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self._parameters:
            return self._parameters[name]
        return self._ref(name)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = _FUNCTIONS.get(key)
            if handler is not None:
                return handler(self, arg)
            if key.startswith("Fn::"):
                raise UnsupportedIntrinsic(key)
        out = {}
        for k, v in value.items():
            resolved = self.resolve(v)
            if resolved is not NO_VALUE:
                out[k] = resolved
        return out

    # -------------------------------------------------------------- functions

    def _fn_ref(self, arg: str) -> Any:
        return self.lookup(arg)

    def _fn_get_att(self, arg: Any) -> Any:
        if isinstance(arg, str):
            logical_id, attribute = arg.split(".", 1)
        else:
            logical_id, attribute = arg[0], self.resolve(arg[1])
        return self._get_att(logical_id, attribute)

    def _fn_sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            template, variables = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            template, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return _scalar(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return _scalar(self._get_att(logical_id, attribute))
            return _scalar(self.lookup(name))

        # "${!Literal}" renders as "${Literal}".
        return _SUB_VAR.sub(replace, template).replace("${!", "${")

    def _fn_join(self, arg: list[Any]) -> str:
        delimiter, items = arg[0], self.resolve(arg[1])
        return delimiter.join(_scalar(i) for i in items)

    def _fn_select(self, arg: list[Any]) -> Any:
        index, items = int(self.resolve(arg[0])), self.resolve(arg[1])
        return items[index]

    def _fn_split(self, arg: list[Any]) -> list[str]:
        return str(self.resolve(arg[1])).split(arg[0])

    def _fn_if(self, arg: list[Any]) -> Any:
        name, when_true, when_false = arg
        return self.resolve(when_true if self.condition(name) else when_false)

    def _fn_equals(self, arg: list[Any]) -> bool:
        left, right = (self.resolve(a) for a in arg)
        return _scalar(left) == _scalar(right)

    def _fn_not(self, arg: list[Any]) -> bool:
        return not self.resolve(arg[0])

    def _fn_and(self, arg: list[Any]) -> bool:
        return all(self.resolve(a) for a in arg)

    def _fn_or(self, arg: list[Any]) -> bool:
        return any(self.resolve(a) for a in arg)

    def _fn_condition(self, arg: str) -> bool:
        return self.condition(arg)

    def _fn_find_in_map(self, arg: list[Any]) -> Any:
        name, top, second = (self.resolve(a) for a in arg[:3])
        return self._mappings[name][top][second]

    def _fn_base64(self, arg: Any) -> str:
        return base64.b64encode(str(self.resolve(arg)).encode()).decode()

    def _fn_get_azs(self, arg: Any) -> list[str]:
        region = self.resolve(arg) or self._pseudo["AWS::Region"]
        return [f"{region}{suffix}" for suffix in "abc"]


_FUNCTIONS: dict[str, Callable[[Resolver, Any], Any]] = {
    "Ref": Resolver._fn_ref,
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
    "Condition": Resolver._fn_condition,
    "Fn::FindInMap": Resolver._fn_find_in_map,
    "Fn::Base64": Resolver._fn_base64,
    "Fn::GetAZs": Resolver._fn_get_azs,
}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_scalar(v) for v in value)
    return str(value)


def references(value: Any) -> Iterator[str]:
    """Logical ids (or parameter names) a value refers to, for dependency ordering."""
    if isinstance(value, list):
        for item in value:
            yield from references(item)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                yield arg
            elif key == "Fn::GetAtt":
                yield (arg.split(".", 1)[0] if isinstance(arg, str) else arg[0])
            elif key == "Fn::Sub":
                yield from _sub_references(arg)
            else:
                yield from references(arg)


def _sub_references(arg: Any) -> Iterator[str]:
    template = arg[0] if isinstance(arg, list) else arg
    local = set(arg[1]) if isinstance(arg, list) else set()
    for match in _SUB_VAR.finditer(template):
        name = match.group(1).strip().split(".", 1)[0]
        if name not in local:
            yield name
    if isinstance(arg, list):
        yield from references(arg[1])
