"""The public pure operations on params: masks, hard thresholding, applying masks.

Each function takes ``params`` (a mapping of parameter name to tensor, like
``dict(model.named_parameters())``), a spec, and hyper-parameters, and returns
new tensors. Inputs are never modified; entries of ``params`` that the spec
does not touch are returned as the same objects. Hyper-parameters may be
Python numbers or tensors; a changing tensor never triggers a recompile.

Semantics:

* With ``nnz`` (or ``sparsity``), exactly ``nnz`` blocks survive in every
  scope; ties go to the lower index in the scope's flattened order.
* With ``thresholds``, a block survives iff its score >= its scope's
  threshold.
* A BlockSpec or BlockCoupling may be passed where a scope is expected: with
  ``thresholds`` every block is its own scope (thresholds in ``grid_shape``),
  with ``nnz``/``sparsity`` all blocks form one scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor

from .errors import ArgumentError, ParamError, ShapeMismatchError, SpecError, describe
from .inputs import check_param
from .layout import (
    expand_grid,
    grid_to_interleaved,
    interleave,
    read_view,
    scope_to_view_grids,
    write_views,
)
from .select import _as_k, _topk_keys, float_keys, sparsity_to_nnz
from .specs import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View
from .stats import check_p, read_views, scores_of

__all__ = ["block_masks", "masks", "hard_threshold", "apply_masks", "as_scope", "keep_blocks"]


# ---------------------------------------------------------------------------
# argument handling
# ---------------------------------------------------------------------------


def as_scope(spec: Any, per_block: bool, where: str) -> Any:
    """Pure: the scope layout ops use for ``spec``.

    Scopes are returned unchanged. A block layout becomes one scope per block
    when ``per_block`` (threshold mode) and one scope of all blocks otherwise.
    """
    if isinstance(spec, (ScopeSpec, ScopeCoupling)):
        return spec
    if isinstance(spec, (BlockSpec, BlockCoupling)):
        return ScopeSpec(spec, (1,) * len(spec.grid_shape) if per_block else ())
    raise SpecError(
        describe(where, "spec", "a ScopeSpec, ScopeCoupling, BlockSpec or BlockCoupling", type(spec).__name__,
                 "build a spec first, e.g. ScopeSpec(BlockSpec(View.of(name, w), (1, 1)), (1, 4)).")
    )


def _one_mode(where: str, **given: Any) -> str:
    named = [k for k, v in given.items() if v is not None]
    if len(named) != 1:
        raise ArgumentError(
            describe(where, "/".join(given), "exactly one of them", f"{named or 'none'}",
                     "pass nnz= (blocks kept per scope), sparsity= (fraction pruned) or thresholds=.")
        )
    return named[0]


def _thresholds(thresholds: Any, scope: Any, dtype: torch.dtype, device: torch.device, where: str) -> Tensor:
    grid = tuple(scope.grid_shape)
    if isinstance(thresholds, Tensor):
        if not thresholds.is_floating_point():
            raise ArgumentError(
                describe(where, "thresholds", "a float tensor", thresholds.dtype, "cast thresholds to a float dtype.")
            )
        if thresholds.ndim != 0 and tuple(thresholds.shape) != grid:
            raise ShapeMismatchError(
                describe(where, "thresholds", f"a number, a 0-d tensor or shape {grid} (the scope grid)",
                         tuple(thresholds.shape), "give one threshold per scope, or one for all.")
            )
        return thresholds.to(device=device, dtype=dtype)
    if isinstance(thresholds, bool) or not isinstance(thresholds, (int, float)):
        raise ArgumentError(
            describe(where, "thresholds", "a number or a float tensor", repr(thresholds), "pass e.g. 0.1.")
        )
    return torch.full((), float(thresholds), dtype=dtype, device=device)


def _nnz(nnz: Any, sparsity: Any, scope: Any, device: torch.device, where: str) -> Tensor:
    n = scope.numblk_per_scope()
    if sparsity is not None:
        nnz = sparsity_to_nnz(scope, sparsity)
    if isinstance(nnz, Tensor) and nnz.ndim != 0 and tuple(nnz.shape) != tuple(scope.grid_shape):
        raise ShapeMismatchError(
            describe(where, "nnz", f"an int, a 0-d tensor or shape {tuple(scope.grid_shape)} (the scope grid)",
                     tuple(nnz.shape), "give one budget per scope, or one for all.")
        )
    return _as_k(nnz, n, where, "nnz", 0, n, device)


def _scores(scope: Any, xs: List[Tensor], scores: Optional[Tensor], p: float, where: str) -> Tensor:
    if scores is None:
        return scores_of(scope, xs, p)
    want = tuple(scope.grid_shape) + (scope.numblk_per_scope(),)
    if not isinstance(scores, Tensor) or not scores.is_floating_point():
        raise ArgumentError(describe(where, "scores", f"a float tensor of shape {want}", type(scores).__name__,
                                     "pass scores from scope_scores(...) or of that layout."))
    if tuple(scores.shape) != want:
        raise ShapeMismatchError(
            describe(where, "scores", f"shape {want} (*scope.grid_shape, numblk_per_scope)", tuple(scores.shape),
                     "compute scores with scope_scores(params, scope, values=...) or match that layout.")
        )
    return scores


def keep_blocks(scope: Any, scores: Tensor, nnz: Optional[Tensor], thresholds: Optional[Tensor]) -> Tensor:
    """Pure: the kept-block mask in scope layout from scores and one hyper-parameter.

    Args:
        scope: A ScopeSpec or ScopeCoupling.
        scores: ``(*lead, *scope.grid_shape, numblk_per_scope)``.
        nnz: int64 tensor broadcastable to ``(*lead, *scope.grid_shape)``, or None.
        thresholds: float tensor broadcastable to the same, or None.
    """
    if nnz is not None:
        return _topk_keys(float_keys(scores.detach()), nnz)
    t = thresholds.to(scores.dtype).unsqueeze(-1)  # type: ignore[union-attr]
    return float_keys(scores.detach()) >= float_keys(t.detach())


def _prepare(params: Any, spec: Any, where: str, *, nnz: Any, sparsity: Any, thresholds: Any,
             values: Any, scores: Any, p: Any) -> Any:
    mode = _one_mode(where, nnz=nnz, sparsity=sparsity, thresholds=thresholds)
    scope = as_scope(spec, mode == "thresholds", where)
    p = check_p(p, where)
    if values is not None and scores is not None:
        raise ArgumentError(describe(where, "values/scores", "at most one of them", "both",
                                     "pass values= to score other tensors, or scores= to give scores directly."))
    xs = read_views(params, scope, where)
    score_xs = xs if values is None else read_views(params, scope, where, values)
    device = xs[0].device
    s = _scores(scope, score_xs, scores, p, where)
    if mode == "thresholds":
        keep = keep_blocks(scope, s, None, _thresholds(thresholds, scope, s.dtype, device, where))
    else:
        keep = keep_blocks(scope, s, _nnz(nnz, sparsity, scope, device, where), None)
    return scope, xs, keep


# ---------------------------------------------------------------------------
# public ops
# ---------------------------------------------------------------------------


def block_masks(params: Any, scope: Any, *, nnz: Any = None, sparsity: Any = None, thresholds: Any = None,
                values: Any = None, scores: Any = None, p: float = 2) -> Tensor:
    """Pure: which blocks survive, in scope layout.

    Args:
        params: Mapping of parameter name to tensor.
        scope: A ScopeSpec or ScopeCoupling (or a block spec, see module doc).
        nnz: Blocks kept per scope: int in ``[0, numblk_per_scope]``, or an
            integer tensor (0-d or scope-grid shaped).
        sparsity: Fraction of blocks pruned per scope, in ``[0, 1]``.
        thresholds: Keep blocks whose score >= threshold (number, 0-d tensor
            or one per scope).
        values: Score these tensors (keyed like params) instead of params.
        scores: Precomputed scores ``(*scope.grid_shape, numblk_per_scope)``.
        p: Norm order of the block scores.

    Returns:
        Bool tensor ``(*scope.grid_shape, numblk_per_scope)``, True = kept,
        aligned with :func:`~sparsekit_fx.stats.scope_scores`.
    """
    _, _, keep = _prepare(params, scope, "block_masks", nnz=nnz, sparsity=sparsity, thresholds=thresholds,
                          values=values, scores=scores, p=p)
    return keep


def _element_masks(scope: Any, keep: Tensor, params: Any) -> Dict[str, Tensor]:
    views = scope.views()
    grids = scope_to_view_grids(scope, keep.to(torch.uint8))
    blocks = [b for b in _block_specs(scope)]
    per_view = [expand_grid(g, b.shape) for g, b in zip(grids, blocks)]
    out: Dict[str, Tensor] = {}
    for name, vs, ms in _by_param(views, per_view):
        if len(vs) == 1 and vs[0].is_whole:
            out[name] = ms[0].view(torch.bool)
            continue
        base = torch.ones(vs[0].param_shape, dtype=torch.uint8, device=keep.device)
        out[name] = write_views(base, vs, ms).view(torch.bool)
    return out


def _block_specs(spec: Any) -> List[BlockSpec]:
    """The BlockSpec behind each entry of ``spec.views()``."""
    if isinstance(spec, BlockSpec):
        return [spec]
    if isinstance(spec, BlockCoupling):
        return list(spec.specs)
    if isinstance(spec, ScopeSpec):
        return _block_specs(spec.block)
    return [b for s in spec.scopes for b in _block_specs(s)]


def _by_param(views: Sequence[View], items: Sequence[Any]) -> List[Any]:
    groups: Dict[str, Any] = {}
    for v, x in zip(views, items):
        vs, xs = groups.setdefault(v.param, ([], []))
        vs.append(v)
        xs.append(x)
    return [(name, vs, xs) for name, (vs, xs) in groups.items()]


def masks(params: Any, scope: Any, *, nnz: Any = None, sparsity: Any = None, thresholds: Any = None,
          values: Any = None, scores: Any = None, p: float = 2) -> Dict[str, Tensor]:
    """Pure: element masks of the surviving blocks, one per parameter the spec touches.

    Arguments as in :func:`block_masks`.

    Returns:
        ``{name: BoolTensor[param_shape]}``, True = kept. Elements outside every
        view of the spec are True.
    """
    scope, _, keep = _prepare(params, scope, "masks", nnz=nnz, sparsity=sparsity, thresholds=thresholds,
                              values=values, scores=scores, p=p)
    return _element_masks(scope, keep, params)


def _apply_keep(scope: Any, xs: List[Tensor], keep: Tensor) -> List[Tensor]:
    """Zero the dropped blocks of each view tensor (no element mask is materialised)."""
    grids = scope_to_view_grids(scope, keep)
    out = []
    for x, g, b in zip(xs, grids, _block_specs(scope)):
        if b.ndim == 0:
            out.append(torch.where(g, x, torch.zeros((), dtype=x.dtype, device=x.device)))
            continue
        xi = interleave(x, b.shape)
        gi = grid_to_interleaved(g, b.ndim)
        out.append(torch.where(gi, xi, torch.zeros((), dtype=x.dtype, device=x.device)).reshape(x.shape))
    return out


def _assemble(params: Any, views: Sequence[View], new_xs: Sequence[Tensor]) -> Dict[str, Tensor]:
    out = dict(params)
    for name, vs, xs in _by_param(views, new_xs):
        out[name] = write_views(params[name], vs, xs)
    return out


def hard_threshold(params: Any, spec: Any, *, nnz: Any = None, sparsity: Any = None, thresholds: Any = None,
                   values: Any = None, scores: Any = None, p: float = 2) -> Dict[str, Tensor]:
    """Pure: zero every block that does not survive; return new params.

    Arguments as in :func:`block_masks`.

    Returns:
        A new dict with the same keys as ``params``. Touched parameters are new
        tensors (dropped blocks are exactly 0, kept elements unchanged, even
        NaN/Inf); untouched entries are the same objects. The original input
        is left unchanged. Gradients flow to the kept elements.
    """
    scope, xs, keep = _prepare(params, spec, "hard_threshold", nnz=nnz, sparsity=sparsity,
                               thresholds=thresholds, values=values, scores=scores, p=p)
    return _assemble(params, scope.views(), _apply_keep(scope, xs, keep))


def apply_masks(params: Any, masks: Any) -> Dict[str, Tensor]:
    """Pure: multiply params by element masks; return new params.

    Args:
        params: Mapping of parameter name to tensor.
        masks: Mapping of parameter name to a mask of that parameter's shape:
            bool (True = kept) or float (used as a multiplier). Names absent
            from ``masks`` are passed through unchanged.

    Returns:
        A new dict with the same keys as ``params``; masked entries are new
        tensors, the others are the same objects. Inputs are never modified.
    """
    where = "apply_masks"
    if not isinstance(masks, Mapping):
        raise ParamError(describe(where, "masks", "a mapping of parameter name -> mask", type(masks).__name__,
                                  "pass the dict returned by masks(...)."))
    out = dict(params) if isinstance(params, Mapping) else None
    if out is None:
        raise ParamError(describe(where, "params", "a mapping of parameter name -> Tensor", type(params).__name__,
                                  "pass dict(model.named_parameters())."))
    for name, m in masks.items():
        x = check_param(params, name, None, where, "params")
        if not isinstance(m, Tensor) or tuple(m.shape) != tuple(x.shape):
            got = tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__
            raise ShapeMismatchError(describe(where, f"masks[{name!r}]", f"a tensor of shape {tuple(x.shape)}", got,
                                              "build masks with masks(params, spec, ...)."))
        if m.dtype == torch.bool:
            out[name] = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))
        else:
            out[name] = x * m.to(x.dtype)
    return out
