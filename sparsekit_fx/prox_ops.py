"""The public proximal operator: group soft thresholding of params, optionally preconditioned.

:func:`soft_threshold` is built in three layers so that a batching engine can
reuse the middle one:

1. validation (:func:`soft_threshold`);
2. the pure kernel :func:`soft_threshold_views`: view tensors in, view tensors
   out, tensor math only (no validation, no mappings), safe to ``vmap`` over a
   stack of same-layout specs;
3. :func:`sparsekit_fx.engine.run`, which reads the views, applies the kernel
   to a spec or a spec tree (batching same-layout specs) and assembles the
   new params.

The solver math lives in :mod:`sparsekit_fx.prox`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor

from .engine import run
from .errors import ArgumentError, ParamError, ShapeMismatchError, SpecError, describe
from .inputs import check_param
from .layout import expand_grid, unpermute_grid
from .prox import PASSES, PASSES_FLOAT64, euclidean_prox, preconditioned_prox
from .specs import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec
from .tree import flatten_specs, spec_hypers

__all__ = ["soft_threshold", "soft_threshold_views"]

_WHERE = "soft_threshold"
_SPECS = (BlockSpec, BlockCoupling, ScopeSpec, ScopeCoupling)


# ---------------------------------------------------------------------------
# the kernel
# ---------------------------------------------------------------------------


def _block_thresholds(scope: ScopeSpec, t: Tensor) -> Tensor:
    """Scope-grid thresholds repeated over the blocks of each scope (0-d stays 0-d)."""
    return t if t.ndim == 0 else expand_grid(t, scope.shape)


def _prox_block(block: Any, xs: Sequence[Tensor], t: Tensor, hs: Optional[Sequence[Tensor]],
                scale: bool, passes: Optional[int]) -> List[Tensor]:
    if scale:  # in the computation dtype: a float32 threshold must not round t * sqrt(n) for float64 params
        acc = torch.float64 if any(x.dtype == torch.float64 for x in (*xs, t)) else torch.float32
        t = t.to(acc) * math.sqrt(block.numel_per_block())
    if hs is None:
        return euclidean_prox(block, xs, t)
    return preconditioned_prox(block, xs, hs, t, passes)


def soft_threshold_views(
    spec: Any,
    xs: Sequence[Tensor],
    thresholds: Tensor,
    conditioner_xs: Optional[Sequence[Tensor]] = None,
    *,
    scale: bool = False,
    passes: Optional[int] = None,
) -> List[Tensor]:
    """Pure: the soft-thresholding kernel on view tensors; no validation.

    Contract (the caller guarantees it; nothing is checked):

    * ``spec`` is a BlockSpec, BlockCoupling, ScopeSpec or ScopeCoupling.
    * ``xs`` holds one tensor per ``spec.views()`` entry, in order, of shape
      ``(*lead, *view.shape)`` (``lead`` may be empty; under ``vmap`` it is).
    * ``thresholds`` is a float tensor, 0-d or ``(*lead, *spec.grid_shape)``:
      the block grid for block specs, the scope grid for scope specs (every
      block of a scope gets its scope's threshold). Negative values act as 0.
    * ``conditioner_xs`` is ``None`` (Euclidean prox) or, like ``xs``, one
      positive tensor per view with the same shapes (diagonal metric ``h``).
    * ``scale`` multiplies each block's threshold by
      ``sqrt(numel_per_block)`` of its (coupled) block; ``passes`` is the
      number of solver passes of the preconditioned prox (>= 1, or ``None``
      for the dtype's default).

    Only reshapes, permutes, reductions and elementwise math are used, so the
    kernel runs under ``torch.compile(fullgraph=True)``, ``vmap`` and
    ``grad``.

    Returns:
        New view tensors, one per ``xs`` entry, same shapes and dtypes.
    """
    hs = conditioner_xs
    if isinstance(spec, (BlockSpec, BlockCoupling)):
        return _prox_block(spec, xs, thresholds, hs, scale, passes)
    if isinstance(spec, ScopeSpec):
        return _prox_block(spec.block, xs, _block_thresholds(spec, thresholds), hs, scale, passes)
    out: List[Tensor] = []
    i = 0
    for s, o in zip(spec.scopes, spec.orders):
        k = len(s.views())
        t = thresholds if thresholds.ndim == 0 else unpermute_grid(thresholds, o)
        part_hs = None if hs is None else hs[i : i + k]
        out += soft_threshold_views(s, xs[i : i + k], t, part_hs, scale=scale, passes=passes)
        i += k
    return out


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _check_spec(spec: Any) -> None:
    if not isinstance(spec, _SPECS):
        raise SpecError(
            describe(_WHERE, "spec", "a BlockSpec, BlockCoupling, ScopeSpec or ScopeCoupling", type(spec).__name__,
                     "build a spec first, e.g. BlockSpec(View.of(name, w), (1, 64)).")
        )


def _grid_word(spec: Any) -> str:
    return "the scope grid" if isinstance(spec, (ScopeSpec, ScopeCoupling)) else "the block grid"


def check_thresholds(thresholds: Any, spec: Any, dtype: torch.dtype, device: torch.device, where: str) -> Tensor:
    """Pure: validate ``thresholds`` for ``spec`` and return them as a tensor.

    Accepts a non-negative Python number, a 0-d float tensor or a float
    tensor of shape ``spec.grid_shape``. Tensor values are not read (they may
    be traced); negative tensor entries act as 0.
    """
    grid = tuple(spec.grid_shape)
    if isinstance(thresholds, Tensor):
        if not thresholds.is_floating_point():
            raise ArgumentError(describe(where, "thresholds", "a float tensor", thresholds.dtype,
                                         "cast thresholds to a float dtype, e.g. thresholds.float()."))
        if thresholds.ndim != 0 and tuple(thresholds.shape) != grid:
            raise ShapeMismatchError(
                describe(where, "thresholds", f"a number, a 0-d tensor or shape {grid} ({_grid_word(spec)})",
                         tuple(thresholds.shape), "give one threshold per (coupled) block or scope, or one for all.")
            )
        return thresholds.to(device=device)
    if isinstance(thresholds, bool) or not isinstance(thresholds, numbers.Real):
        raise ArgumentError(describe(where, "thresholds", "a number or a float tensor", repr(thresholds),
                                     "pass e.g. thresholds=0.1 or a tensor."))
    value = float(thresholds)
    if not value >= 0:  # also refuses NaN
        raise ArgumentError(describe(where, "thresholds", "a number >= 0", value,
                                     "use a non-negative threshold (0 leaves the params unchanged)."))
    return torch.full((), value, dtype=dtype, device=device)


def check_passes(passes: Any, where: str) -> Optional[int]:
    """Pure: validate the number of solver passes (``None`` or a Python int >= 1)."""
    if passes is None:
        return None
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ArgumentError(describe(where, "passes", "None or a Python int >= 1", repr(passes),
                                     f"omit it (default {PASSES}, {PASSES_FLOAT64} in float64) or pass more "
                                     "for widely spread conditioners."))
    return passes


# ---------------------------------------------------------------------------
# public op
# ---------------------------------------------------------------------------


def soft_threshold(
    params: Any,
    spec: Any,
    thresholds: Any,
    *,
    conditioners: Any = None,
    scale: bool = False,
    passes: Optional[int] = None,
) -> Dict[str, Tensor]:
    """Pure: the proximal map of ``thresholds * ||block||_2`` for every (coupled) block.

    Without conditioners this is group soft thresholding,
    ``x * max(0, 1 - t / ||x||)`` per block (all elements of a coupled block
    together). With a diagonal conditioner ``H`` (e.g. Adam's
    ``sqrt(v_hat) + eps``) each block becomes
    ``argmin_x 1/2 (x - v)^T H (x - v) + t ||x||``, i.e. ``x = H v / (H + mu)``
    with ``mu ||x|| = t``, and exactly 0 when ``||H v|| <= t``; ``mu`` is solved
    to float32 precision with a fixed number of passes (see
    :mod:`sparsekit_fx.prox`).

    Args:
        params: Mapping of parameter name to tensor.
        spec: A BlockSpec or BlockCoupling (thresholds per block, shape
            ``grid_shape``) or a ScopeSpec or ScopeCoupling (thresholds per
            scope, shape ``grid_shape`` of the scope grid, applied to every
            block of the scope; each block is still thresholded on its own),
            or a spec tree (a tuple/list/dict of them; see
            :mod:`sparsekit_fx.tree`).
        thresholds: ``t >= 0``: a Python number, a 0-d tensor, or a tensor of
            the grid shape above; for a spec tree, one shared value or a
            container shaped like the tree. Tensors never trigger
            recompiles; negative tensor entries act as 0.
        conditioners: ``None``, or a mapping keyed like ``params`` with a
            positive tensor of each touched parameter's shape.
        scale: Multiply each block's threshold by ``sqrt(numel_per_block)``
            of its (coupled) block.
        passes: Solver passes of the preconditioned prox (>= 1). The default
            (``None``: 3, or 5 when computing in float64) reaches the
            dtype's precision for Adam-like conditioners and spreads up to
            ~10^4 within a block; pass 4 for wider spreads in float32.

    Returns:
        A new dict with the same keys as ``params``: touched parameters are
        new tensors, untouched entries are the same objects. The original
        input is left unchanged. Differentiable with respect to params,
        thresholds and conditioners (implicit-function gradients, finite at
        zeroed blocks), also under ``torch.func`` transforms and
        ``torch.compile``.

    Raises:
        SparseKitError: The spec is not a block or scope spec, a parameter or
            conditioner is missing or mis-shaped, ``thresholds`` has the wrong
            shape or type, or ``passes`` is invalid.
    """
    raw, treedef = flatten_specs(spec, _WHERE)
    for s in raw:
        _check_spec(s)
    check_passes(passes, _WHERE)
    if not isinstance(scale, bool):
        raise ArgumentError(describe(_WHERE, "scale", "True or False", repr(scale),
                                     "pass scale=True to multiply thresholds by sqrt(numel_per_block)."))
    if conditioners is not None and not isinstance(conditioners, Mapping):
        raise ParamError(
            describe(_WHERE, "conditioners", "None or a mapping of parameter name -> Tensor",
                     type(conditioners).__name__, "pass a dict keyed like params, e.g. adam_conditioners(opt, params).")
        )
    hypers = []
    for s, t in zip(raw, spec_hypers(thresholds, treedef, len(raw), _WHERE, "thresholds")):
        x = check_param(params, s.views()[0].param, s.views()[0].param_shape, _WHERE, "params")
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        hypers.append({"thresholds": check_thresholds(t, s, dtype, x.device, _WHERE)})

    def kernel(s: Any, xs: List[Tensor], aux: Dict[str, List[Tensor]], hyper: Dict[str, Tensor],
               want: frozenset) -> Dict[str, Any]:
        return {"x": soft_threshold_views(s, xs, hyper["thresholds"], aux.get("conditioners"),
                                          scale=scale, passes=passes)}

    return run(params, raw, kernel, hypers, where=_WHERE, aux={"conditioners": conditioners})["params"]
