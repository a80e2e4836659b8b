"""Captured values and `${...}` references in case data.

A step can capture what it saw under a name (a response, an event, a stream's
end); later steps refer into it with `${name.field.subfield}`, list items by
index (`${list.tasks.0.id}`). A string that is exactly one reference takes the
referenced value as is (a number stays a number); references inside longer
strings are formatted into them. `{$repeat: [text, count]}` builds long strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.message import Message

from conformance.cases import messages

REFERENCE = re.compile(r"\$\{([^}]+)\}")


class BindingError(LookupError):
    """A reference names nothing that was captured, or a path that is not there."""


class Bindings:
    """The values a case run has captured so far, plus local names such as a repeat's counter.

    Captures always go to the outermost scope, so a value captured inside a
    repeat or a parallel branch is visible to every later step.
    """

    def __init__(
        self,
        initial: Mapping[str, Any] | None = None,
        parent: Bindings | None = None,
        *,
        literals: Callable[[Any], Any] | None = None,
    ) -> None:
        self._values: dict[str, Any] = dict(initial or {})
        self._parent = parent
        # Applied to every template before its references are resolved: the
        # runner counts a case's literal sequences from a shared server's head.
        self._literals = literals if parent is None else parent._literals

    def bind(self, name: str, value: Any) -> None:
        """Capture a value under a name (replacing an earlier one)."""
        if self._parent is not None:
            self._parent.bind(name, value)
        else:
            self._values[name] = value

    def child(self, **values: Any) -> Bindings:
        """A scope with extra local names, e.g. a repeat's counter."""
        return Bindings(values, parent=self)

    def _find(self, name: str) -> tuple[bool, Any]:
        if name in self._values:
            return True, self._values[name]
        if self._parent is not None:
            return self._parent._find(name)
        return False, None

    def lookup(self, reference: str) -> Any:
        """The value a dotted reference points at."""
        head, *path = reference.strip().split(".")
        found, value = self._find(head)
        if not found:
            raise BindingError(f"${{{reference}}}: nothing was captured as {head!r}")
        for i, part in enumerate(path):
            value = _step_into(value, part, f"${{{'.'.join([head, *path[: i + 1]])}}}")
        if isinstance(value, Message):
            return messages.to_plain(value)
        return value

    def resolve(self, template: Any) -> Any:
        """Replace every reference in a YAML value (recursively) with what it points at."""
        if self._literals is not None:
            template = self._literals(template)
        return self._resolve(template)

    def _resolve(self, template: Any) -> Any:
        if isinstance(template, str):
            whole = REFERENCE.fullmatch(template)
            if whole:
                return self.lookup(whole.group(1))
            return REFERENCE.sub(lambda m: _text(self.lookup(m.group(1))), template)
        if isinstance(template, list):
            return [self._resolve(item) for item in template]
        if isinstance(template, Mapping):
            if set(template) == {"$repeat"}:
                text, count = self._resolve(template["$repeat"])
                return str(text) * int(count)
            return {key: self._resolve(value) for key, value in template.items()}
        return template


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _step_into(value: Any, part: str, where: str) -> Any:
    if isinstance(value, Message):
        descriptor = messages.descriptor_of(value)
        field = descriptor.fields_by_name.get(part)
        if field is None:
            raise BindingError(f"{where}: {descriptor.name} has no field {part!r}")
        if field.has_presence and not field.is_repeated and not value.HasField(part):
            raise BindingError(f"{where}: the field is not set")
        return getattr(value, part)
    if isinstance(value, Mapping):
        if part not in value:
            raise BindingError(f"{where}: no key {part!r} (keys: {sorted(value)})")
        return value[part]
    if isinstance(value, list | tuple) or (hasattr(value, "__getitem__") and part.isdigit()):
        try:
            return value[int(part)]
        except (ValueError, IndexError):
            raise BindingError(f"{where}: no item {part}") from None
    raise BindingError(f"{where}: cannot look into {value!r}")
