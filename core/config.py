"""Helpers for typed config classes (techniques, backends, losses, model options).

Every config class is a frozen attrs class whose fields are declared with :func:`option`, so each
field carries its help text and its range; the recipe reference in docs/ is generated from them and a
test fails when a field has no help::

    @define(frozen=True, kw_only=True)
    class PruneConfig:
        ratio: float = option(0.5, help="Fraction of channels removed.", validator=in_range(0.0, 1.0, hi_open=True))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from srcompress.errors import number_hint

__all__ = ["FieldValueError", "field_help", "in_range", "names", "one_of", "option", "positive", "strict_scalar"]

_HELP = "srcompress_help"
_RANGE = "srcompress_range"


class FieldValueError(ValueError):
    """A field's value is out of its range; ``field`` names it, ``problem`` says what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def _naming(validator: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a validator so its ValueError names the field (``ratio: must be < 1 (got 1.5)``)."""

    def check(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        try:
            validator(inst, attribute, value)
        except FieldValueError:
            raise
        except (ValueError, TypeError) as exc:
            raise FieldValueError(attribute.name, str(exc)) from None

    return check


def option(
    default: Any = attrs.NOTHING,
    *,
    help: str,
    validator: Callable[..., Any] | list[Callable[..., Any]] | None = None,
    factory: Callable[[], Any] | None = None,
    converter: Callable[[Any], Any] | None = None,
) -> Any:
    """An attrs field with help text (and the range of its validator, when it has one)."""
    validators = validator if isinstance(validator, list) else ([validator] if validator else [])
    ranges = [getattr(v, _RANGE) for v in validators if hasattr(v, _RANGE)]
    validators = [_naming(v) for v in validators]
    metadata = {_HELP: help, _RANGE: "; ".join(ranges)}
    if factory is not None:
        return attrs.field(factory=factory, validator=validators or None, converter=converter, metadata=metadata)
    return attrs.field(default=default, validator=validators or None, converter=converter, metadata=metadata)


def field_help(attribute: attrs.Attribute) -> tuple[str, str]:
    """(help, range) of a field declared with :func:`option`; ("", "") otherwise."""
    return attribute.metadata.get(_HELP, ""), attribute.metadata.get(_RANGE, "")


def _tagged(check: Callable[[Any, attrs.Attribute, Any], None], description: str) -> Callable[..., None]:
    setattr(check, _RANGE, description)
    return check


def in_range(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False
) -> Callable[..., None]:
    """Validator: ``lo <= value <= hi`` (``<`` on an open end); ``None`` means unbounded."""
    lo_sign, hi_sign = (">" if lo_open else ">="), ("<" if hi_open else "<=")
    parts = ([f"{lo_sign} {lo}"] if lo is not None else []) + ([f"{hi_sign} {hi}"] if hi is not None else [])
    description = " and ".join(parts)

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is None:
            return
        too_low = lo is not None and (value <= lo if lo_open else value < lo)
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high:
            raise ValueError(f"must be {description} (got {value})")

    return _tagged(check, description)


def positive(_inst: Any = None, attribute: Any = None, value: Any = None) -> Any:
    """Validator: value > 0."""
    return in_range(0, None, lo_open=True)(_inst, attribute, value)


setattr(positive, _RANGE, "> 0")


def one_of(choices: Iterable[Any]) -> Callable[..., None]:
    """Validator: value is one of ``choices`` (the error lists them)."""
    allowed = tuple(choices)
    description = "one of " + ", ".join(repr(c) for c in allowed)

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in allowed:
            raise ValueError(f"must be {description} (got {value!r})")

    return _tagged(check, description)


def names(value: Any) -> tuple[str, ...]:
    """Converter for name-list fields: one name or a sequence of names -> a tuple of names."""
    return (value,) if isinstance(value, str) else tuple(value)


_SCALAR_NOUNS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def strict_scalar(kind: type) -> Callable[[Any, type], Any]:
    """cattrs structure hook for an ``int``, ``float``, ``bool`` or ``str`` field that converts nothing
    but an int to a float: ``"3"`` is not an integer, ``1`` is not ``true``, ``true`` is not a number.

    The TypeError says what was expected (``must be a number (got 'big')``); for a string that YAML 1.1
    kept because of its exponent (``1e-06``) it also says how to write the number.
    """
    noun = _SCALAR_NOUNS[kind]

    def hook(value: Any, _type: type) -> Any:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            hint = number_hint(value) if kind is float else ""
            raise TypeError(f"must be {noun} (got {value!r}{hint})")
        return value

    return hook
