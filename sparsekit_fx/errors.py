"""The exception hierarchy of sparsekit_fx.

Every error the library raises on bad input is a :class:`SparseKitError`.
Each also derives from the closest built-in exception (``ValueError``,
``TypeError``, ``KeyError``-like ``LookupError``) so generic handlers keep
working. Messages follow one pattern, built by :func:`describe`: where the
problem is, which argument, what was expected, what was got, and how to fix it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SparseKitError",
    "SpecError",
    "ShapeMismatchError",
    "CouplingError",
    "ParamError",
    "ArgumentError",
    "RuleError",
    "BuilderError",
    "UnknownNameError",
    "DuplicateNameError",
    "FormatError",
    "NonFiniteError",
    "describe",
]


class SparseKitError(Exception):
    """Base class of every error raised by sparsekit_fx on bad input."""


class SpecError(SparseKitError, ValueError):
    """A spec (View, BlockSpec, ScopeSpec, coupling) is malformed."""


class ShapeMismatchError(SparseKitError, ValueError):
    """A shape does not fit the layout it must fit (blocks, scopes, params)."""


class CouplingError(SparseKitError, ValueError):
    """Coupled specs cannot be aligned (orders, grids, overlapping views)."""


class ParamError(SparseKitError, LookupError):
    """A params-like mapping (params, values, conditioners, targets) is missing
    a name, or holds a tensor of the wrong shape, dtype or device."""

    def __str__(self) -> str:  # LookupError would repr() the message; keep it readable.
        return str(self.args[0]) if self.args else ""


class ArgumentError(SparseKitError, ValueError):
    """A hyper-parameter (nnz, sparsity, thresholds, p, ...) is out of range or
    of the wrong shape or type."""


class RuleError(SparseKitError, ValueError):
    """A rule of :func:`~sparsekit_fx.specs_from_module` matches nothing, or
    matches a parameter its block/scope shapes do not fit."""


class BuilderError(SparseKitError, ValueError):
    """A :class:`~sparsekit_fx.SpecBuilder` call refers to a spec of the wrong
    kind, reuses a spec already consumed, or leaves a block outside every scope."""


class UnknownNameError(BuilderError, LookupError):
    """A builder call names a spec that was never added."""

    def __str__(self) -> str:  # LookupError would repr() the message; keep it readable.
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(BuilderError):
    """A builder call adds a spec under a name that is already taken."""


class FormatError(SparseKitError, ValueError):
    """A saved spec tree or mask file is malformed, of another format, or of an
    unsupported schema version."""


class NonFiniteError(SparseKitError, ValueError):
    """:func:`~sparsekit_fx.check_finite` found NaN or Inf values. Pure ops never
    raise it: they must compile, so they handle NaN/Inf deterministically instead."""


def describe(where: str, arg: str, expected: Any, got: Any, fix: str) -> str:
    """Pure: build the standard error message.

    Args:
        where: The object or function the problem was found in, e.g.
            ``"BlockSpec(name='fc1')"`` or ``"hard_threshold"``.
        arg: The offending argument, e.g. ``"shape"``.
        expected: What a valid value looks like.
        got: What was received.
        fix: One sentence telling the user how to fix the call.

    Returns:
        ``"<where>: argument '<arg>' expected <expected>, got <got>. Fix: <fix>"``.
    """
    return f"{where}: argument '{arg}' expected {expected}, got {got}. Fix: {fix}"
