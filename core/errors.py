"""Errors with one-line messages that name the thing and the fix.

The CLI prints ``str(error)`` of any :class:`SrcompressError` on one line (no traceback unless
``--debug``). Anything else escaping is a bug.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable

__all__ = [
    "CheckpointError",
    "DataError",
    "DeployError",
    "PluginError",
    "RecipeError",
    "SrcompressError",
    "StageError",
    "UnknownNameError",
    "number_hint",
    "suggest",
]


class SrcompressError(Exception):
    """Base class of every error srcompress reports to a user."""


class PluginError(SrcompressError):
    """A plugin failed to import, to validate against the hook specs, or collided with another."""


class UnknownNameError(SrcompressError, KeyError):
    """A model/technique/backend/loss/metric/dataset name that nothing registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RecipeError(SrcompressError):
    """A recipe that does not validate. ``path`` is like ``stages[1].ratio``."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


class CheckpointError(SrcompressError):
    """A checkpoint or weights file that is missing, corrupted, or of another architecture."""


class DataError(SrcompressError):
    """A dataset or image that cannot be found or read."""


class StageError(SrcompressError):
    """A stage of a run failed; names the stage index, its type and the plugin."""


class DeployError(SrcompressError):
    """A backend failed to compile, or its output does not match torch within tolerance."""


def suggest(name: str, known: Iterable[str], kind: str) -> str:
    """``"unknown model 'edsr_bse'; did you mean 'edsr_base'? (available: a, b)"``."""
    known = sorted(set(known))
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    listing = ", ".join(known) if known else "none registered"
    return f"unknown {kind} '{name}'{hint} (available: {listing})"



def number_hint(value: object) -> str:
    """For a string YAML kept because of its exponent (``'1e-06'``): why, and how to write it; else "".

    PyYAML follows YAML 1.1, where a float needs a decimal point and a signed exponent: ``1e-06``
    and ``2.5e4`` stay strings, ``1.0e-06`` and ``2.5e+04`` are floats.
    """
    if not isinstance(value, str) or "e" not in value.lower():
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    if not math.isfinite(number):
        return ""
    written = repr(number)  # exact; Python's exponent always has its sign
    if "e" in written and "." not in written.split("e")[0]:
        mantissa, exponent = written.split("e")
        written = f"{mantissa}.0e{exponent}"
    return f": YAML 1.1 reads {value} as a string (a float needs a decimal point and a signed exponent); write {written}"
