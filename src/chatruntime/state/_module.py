"""``StateModule``: an object whose named attributes can be saved as JSON and loaded back.

The model is agentscope's: attributes are registered by name (with optional converters for
values that are not JSON themselves), and a ``StateModule`` assigned as an attribute of
another is registered automatically, so ``state_dict()`` of the outer one holds the inner
one's state under the attribute's name.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..models import METADATA_MAX_DEPTH, InvalidInputError
from ..models._common import unicode_problem

ToJson = Callable[[Any], Any]
"""Turns an attribute's value into JSON data (dicts with string keys, lists, strings,
finite numbers, booleans, ``None``)."""

FromJson = Callable[[Any], Any]
"""Turns the JSON data :data:`ToJson` made back into the attribute's value."""


@dataclass(frozen=True)
class _Registered:
    to_json: ToJson | None
    from_json: FromJson | None


class StateModule:
    """Base class of objects whose state is saved with a session.

    Register the attributes to save with :meth:`register_state`; assign other
    ``StateModule`` objects as attributes and they are part of the state too. Subclasses
    that define ``__init__`` call ``super().__init__()`` first.

    Example:
        >>> class Memory(StateModule):
        ...     def __init__(self) -> None:
        ...         super().__init__()
        ...         self.notes: list[str] = []
        ...         self.register_state("notes")
        >>> class Assistant(StateModule):
        ...     def __init__(self) -> None:
        ...         super().__init__()
        ...         self.memory = Memory()  # registered automatically
        >>> Assistant().state_dict()
        {'memory': {'notes': []}}
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_state_modules", {})
        object.__setattr__(self, "_state_attributes", {})

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, StateModule):
            self._modules()[name] = value
        elif name in self.__dict__.get("_state_modules", {}):
            # The attribute no longer holds a module: it leaves the state with it.
            del self._modules()[name]
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        self.__dict__.get("_state_modules", {}).pop(name, None)
        self.__dict__.get("_state_attributes", {}).pop(name, None)
        super().__delattr__(name)

    def _modules(self) -> dict[str, StateModule]:
        try:
            modules: dict[str, StateModule] = self.__dict__["_state_modules"]
        except KeyError:
            raise TypeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before it "
                "assigns attributes"
            ) from None
        return modules

    def _attributes(self) -> dict[str, _Registered]:
        self._modules()  # the same check
        attributes: dict[str, _Registered] = self.__dict__["_state_attributes"]
        return attributes

    def register_state(
        self, name: str, to_json: ToJson | None = None, from_json: FromJson | None = None
    ) -> None:
        """Save the attribute ``name`` with the state, converted by ``to_json`` when given
        (and loaded back through ``from_json``).

        The attribute's current value is converted and checked at once, so a value that
        cannot be stored fails here rather than when the session is saved.

        Raises:
            InvalidInputError: The attribute does not exist, holds a ``StateModule`` (those are
                registered already), a converter is not callable, or the value (converted by
                ``to_json``) is not JSON data: the message names the attribute and the
                offending part (``VALIDATION_ERROR``, ``details["field"]`` is ``name``).
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidInputError(
                f"state name must be an attribute name, got {name!r}", field="name"
            )
        if not hasattr(self, name):
            raise InvalidInputError(
                f"{type(self).__name__} has no attribute {name!r} to register; assign it first",
                field=name,
            )
        if isinstance(getattr(self, name), StateModule):
            raise InvalidInputError(
                f"{type(self).__name__}.{name} is a StateModule: it is part of the state "
                "already, without register_state",
                field=name,
            )
        for role, converter in (("to_json", to_json), ("from_json", from_json)):
            if converter is not None and not callable(converter):
                raise InvalidInputError(f"{role} must be callable, got {converter!r}", field=name)
        registered = _Registered(to_json, from_json)
        self._encode(name, registered)
        self._attributes()[name] = registered

    def state_dict(self) -> dict[str, Any]:
        """The state as JSON data: each registered attribute (converted) and each nested
        module's ``state_dict()``, by name. A copy: changing it changes nothing here.

        Raises:
            InvalidInputError: A registered attribute now holds a value that is not JSON data.
        """
        state: dict[str, Any] = {
            name: module.state_dict() for name, module in self._modules().items()
        }
        for name, registered in self._attributes().items():
            state[name] = self._encode(name, registered)
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Set the registered attributes and nested modules from ``state`` (as
        :meth:`state_dict` made it). Keys ``state`` has and this module does not register
        are ignored.

        Args:
            state: The state to load.
            strict: Whether every registered attribute and nested module must be in
                ``state``. When one is missing, nothing is loaded and the error names every
                missing key (nested ones as ``outer.inner``). Not strict, missing ones keep
                their current value.

        Raises:
            InvalidInputError: ``state`` is not a dict, or (strict) keys are missing.
        """
        if strict:
            missing = self.missing_keys(state)
            if missing:
                raise InvalidInputError(
                    f"the state of {type(self).__name__} lacks {', '.join(missing)}: load it "
                    "with strict=False to keep their current values",
                    field="state",
                    missing=missing,
                )
        self._load(state, "")

    def missing_keys(self, state: object) -> list[str]:
        """The keys a strict :meth:`load_state_dict` of ``state`` would miss, nested ones as
        ``outer.inner`` (empty when it would load).

        Raises:
            InvalidInputError: ``state`` (or a nested module's part of it) is not a dict.
        """
        return self._missing(state, "")

    def _missing(self, state: object, path: str) -> list[str]:
        _require_dict(state, path)
        assert isinstance(state, dict)
        missing: list[str] = []
        for name, module in self._modules().items():
            if name in state:
                missing += module._missing(state[name], f"{path}{name}.")
            else:
                missing.append(path + name)
        missing += [path + name for name in self._attributes() if name not in state]
        return missing

    def _load(self, state: object, path: str) -> None:
        _require_dict(state, path)
        assert isinstance(state, dict)
        for name, module in self._modules().items():
            if name in state:
                module._load(state[name], f"{path}{name}.")
        for name, registered in self._attributes().items():
            if name in state:
                # A copy: the module must not share lists or dicts with the caller's state.
                value = copy.deepcopy(state[name])
                if registered.from_json is not None:
                    value = registered.from_json(value)
                object.__setattr__(self, name, value)

    def _encode(self, name: str, registered: _Registered) -> Any:
        value = getattr(self, name)
        if registered.to_json is not None:
            value = registered.to_json(value)
        problem = json_problem(value)
        if problem is not None:
            hint = "" if registered.to_json else "; register it with to_json= and from_json="
            raise InvalidInputError(
                f"state {type(self).__name__}.{name} cannot be stored as JSON: {problem}{hint}",
                field=name,
            )
        return copy.deepcopy(value)


def _require_dict(state: object, path: str) -> None:
    if not isinstance(state, dict):
        where = f"the state of {path[:-1]}" if path else "a state"
        raise InvalidInputError(
            f"{where} must be a dict, got {type(state).__name__}", field="state"
        )


def json_problem(value: object, depth: int = 1) -> str | None:
    """Why ``value`` is not JSON data that every store gives back exactly, or ``None``.

    JSON data: dicts with string keys, lists, strings of valid Unicode, finite floats,
    integers, booleans and ``None``, nested at most ``METADATA_MAX_DEPTH`` levels. Tuples,
    sets and other types are refused (a tuple would come back as a list).
    """
    if value is None or isinstance(value, bool | int | str | float):
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value!r} is not a finite number"
        if isinstance(value, str) and (problem := unicode_problem(value)) is not None:
            return f"a string {problem}"
        return None
    if depth > METADATA_MAX_DEPTH:
        return f"it is nested more than {METADATA_MAX_DEPTH} levels deep"
    if isinstance(value, list):
        for item in value:
            if (problem := json_problem(item, depth + 1)) is not None:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"the key {key!r} is not a string"
            if (problem := unicode_problem(key)) is not None:
                return f"a key {problem}"
            if (problem := json_problem(item, depth + 1)) is not None:
                return problem
        return None
    return f"a {type(value).__name__} is not JSON data"
