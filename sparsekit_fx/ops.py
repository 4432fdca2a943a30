"""The public pure operations on params: masks, hard thresholding, applying masks.

Each function takes ``params`` (a mapping of parameter name to tensor, like
``dict(model.named_parameters())``), a spec or a spec tree (see
:mod:`sparsekit_fx.tree`), and hyper-parameters, and returns new tensors.
Inputs are never modified; entries of ``params`` that no spec touches are
returned as the same objects. Hyper-parameters may be Python numbers or
tensors; a changing tensor never triggers a recompile. For a spec tree, a
hyper-parameter is either shared by all specs or given as a container with the
tree's structure.

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

import math
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from .engine import run
from .errors import ArgumentError, ParamError, ShapeMismatchError, SpecError, describe
from .inputs import check_mapping, check_param
from .layout import (
    block_specs,
    expand_grid,
    from_scopes,
    grid_to_interleaved,
    interleave,
    pack_bool,
    scope_to_view_grids,
    to_scopes,
)
from .select import _as_k, packs_rows, sparsity_to_nnz, threshold_keep, topk_keep, topk_where
from .specs import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec
from .stats import check_p, scores_of
from .tree import flatten_specs, spec_hypers

__all__ = [
    "block_masks",
    "masks",
    "hard_threshold",
    "apply_masks",
    "as_scope",
    "keep_blocks",
    "apply_keep",
]


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
        nnz = sparsity_to_nnz(scope, sparsity, _where=where)
    if isinstance(nnz, Tensor) and nnz.ndim != 0 and tuple(nnz.shape) != tuple(scope.grid_shape):
        raise ShapeMismatchError(
            describe(where, "nnz", f"an int, a 0-d tensor or shape {tuple(scope.grid_shape)} (the scope grid)",
                     tuple(nnz.shape), "give one budget per scope, or one for all.")
        )
    return _as_k(nnz, n, where, "nnz", 0, n, device)


def _check_scores(scores: Any, scope: Any, device: torch.device, where: str) -> Tensor:
    want = tuple(scope.grid_shape) + (scope.numblk_per_scope(),)
    if not isinstance(scores, Tensor) or not scores.is_floating_point():
        got = f"a {scores.dtype} tensor" if isinstance(scores, Tensor) else type(scores).__name__
        raise ArgumentError(describe(where, "scores", f"a float tensor of shape {want}", got,
                                     "pass scores from scope_scores(...) or of that layout."))
    if tuple(scores.shape) != want:
        raise ShapeMismatchError(
            describe(where, "scores", f"shape {want} (*scope.grid_shape, numblk_per_scope)", tuple(scores.shape),
                     "compute scores with scope_scores(params, scope, values=...) or match that layout.")
        )
    if scores.device != device:
        raise ParamError(describe(where, "scores", f"a tensor on the params' device ({device})", scores.device,
                                  f"move the scores first: scores.to('{device}')."))
    return scores


def _device(params: Any, scope: Any) -> torch.device:
    name = scope.views()[0].param
    t = params.get(name) if isinstance(params, Mapping) else None
    return t.device if isinstance(t, Tensor) else torch.device("cpu")


def _acc(params: Any, scope: Any) -> torch.dtype:
    name = scope.views()[0].param
    t = params.get(name) if isinstance(params, Mapping) else None
    return torch.float64 if isinstance(t, Tensor) and t.dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------
# kernels (no validation; vmap-able)
# ---------------------------------------------------------------------------


def keep_blocks(scope: Any, scores: Tensor, nnz: Optional[Tensor], thresholds: Optional[Tensor]) -> Tensor:
    """Pure: the kept-block mask in scope layout from scores and one hyper-parameter.

    Args:
        scope: A ScopeSpec or ScopeCoupling.
        scores: ``(*lead, *scope.grid_shape, numblk_per_scope)``.
        nnz: int64 tensor broadcastable to ``(*lead, *scope.grid_shape)``, or None.
        thresholds: float tensor broadcastable to the same, or None.
    """
    if nnz is not None:
        return topk_keep(scores.detach(), nnz)
    return threshold_keep(scores.detach(), thresholds.to(scores.dtype).unsqueeze(-1))  # type: ignore[union-attr]


def apply_keep(scope: Any, xs: List[Tensor], keep: Tensor) -> List[Tensor]:
    """Pure: zero the dropped blocks of each view tensor (no element mask is materialised)."""
    out = []
    for x, g, b in zip(xs, scope_to_view_grids(scope, keep), block_specs(scope)):
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        if b.ndim == 0:
            out.append(torch.where(g, x, zero))
        elif b.pad:  # partial edge blocks: broadcast the grid over the view, padding cropped
            out.append(torch.where(expand_grid(g, b.shape, b.padding), x, zero))
        else:
            out.append(_where_blocks(x, g, tuple(b.shape)))
    return out


def _where_blocks(x: Tensor, g: Tensor, shape: Tuple[int, ...]) -> Tensor:
    """Pure: ``x`` with the blocks whose grid entry in ``g`` is False set to 0.

    Inductor vectorises only the innermost loop. With blocks at least 16
    wide, or one row high, the block-interleaved layout is best (the keep
    flag is constant along that loop). Narrower blocks spanning several rows
    get their flags expanded along the last dim only and packed into words
    (``numel / rows_per_block`` bytes, one vectorised store), so the loop over
    ``x`` reads them contiguously.
    """
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    nd = len(shape)
    last, width = shape[-1], x.shape[-1]
    rows = math.prod(shape[:-1])
    if rows > 1 and last % 16 != 0 and width % 4 == 0:
        lead = tuple(g.shape[: g.ndim - nd])
        grid = tuple(g.shape[g.ndim - nd:])
        wide = g.unsqueeze(-1).expand(g.shape + (last,)).reshape(lead + grid[:-1] + (width,))
        wide = pack_bool(wide)
        inter: List[int] = []
        flags: List[int] = []
        for gs, bs in zip(grid[:-1], shape[:-1]):
            inter += [gs, bs]
            flags += [gs, 1]
        xi = x.reshape(lead + tuple(inter) + (width,))
        return torch.where(wide.reshape(lead + tuple(flags) + (width,)), xi, zero).reshape(x.shape)
    kept = torch.where(grid_to_interleaved(g, nd), interleave(x, shape), zero)
    return kept.reshape(x.shape)


def _single_elements(scope: Any) -> bool:
    """Pure: whether every block of ``scope`` is one element of one view (2:4-like layouts)."""
    return (isinstance(scope, ScopeSpec) and isinstance(scope.block, BlockSpec) and not scope.block.pad
            and scope.block.numel_per_block() == 1)


def _topk_elements(scope: ScopeSpec, x: Tensor, scores: Tensor, nnz: Tensor) -> Tensor:
    """Pure: hard thresholding of single-element blocks, selection and zeroing in one pass."""
    grid = tuple(scope.block.grid_shape)
    lead = tuple(x.shape[: x.ndim - len(scope.block.view.shape)])  # batch dims, if any
    vals = to_scopes(x.reshape(lead + grid), tuple(scope.shape))
    return from_scopes(topk_where(scores, nnz, vals), tuple(scope.shape)).reshape(x.shape)


def _view_masks(scope: Any, keep: Tensor, packed: bool) -> List[Tensor]:
    """Pure: view-shaped keep masks.

    ``packed``: ``keep`` was written as packed words (short rows, see
    :func:`~sparsekit_fx.select.packs_rows`) and every block is one element, so
    it already is the mask: it is returned as bool, which the engine passes
    through. Otherwise uint8 masks (see :func:`sparsekit_fx.engine.run`).
    """
    blocks = block_specs(scope)
    if packed and all(b.numel_per_block() == 1 and not b.pad for b in blocks):
        return [g.reshape(b.view.shape) for g, b in zip(scope_to_view_grids(scope, keep), blocks)]
    grids = scope_to_view_grids(scope, keep.to(torch.uint8))
    return [expand_grid(g, b.shape, b.padding) for g, b in zip(grids, blocks)]


def _select_kernel(p: float) -> Any:
    def kernel(scope: Any, xs: List[Tensor], aux: Dict[str, List[Tensor]], hyper: Dict[str, Tensor],
               want: frozenset) -> Dict[str, Any]:
        scores = hyper["scores"] if "scores" in hyper else scores_of(scope, aux.get("values", xs), p)
        nnz = hyper.get("nnz")
        if want == frozenset({"x"}) and nnz is not None and _single_elements(scope):
            return {"x": [_topk_elements(scope, xs[0], scores.detach(), nnz)]}
        keep = keep_blocks(scope, scores, nnz, hyper.get("thresholds"))
        out: Dict[str, Any] = {}
        if "keep" in want:
            out["keep"] = keep
        if "x" in want:
            out["x"] = apply_keep(scope, xs, keep)
        if "mask" in want:
            out["mask"] = _view_masks(scope, keep, nnz is not None and packs_rows(scope.numblk_per_scope()))
        return out

    return kernel


def _select(params: Any, spec: Any, where: str, want: frozenset, *, nnz: Any, sparsity: Any, thresholds: Any,
            values: Any, scores: Any, p: Any) -> Dict[str, Any]:
    mode = _one_mode(where, nnz=nnz, sparsity=sparsity, thresholds=thresholds)
    p = check_p(p, where)
    if values is not None and scores is not None:
        raise ArgumentError(describe(where, "values/scores", "at most one of them", "both",
                                     "pass values= to score other tensors, or scores= to give scores directly."))
    raw, treedef = flatten_specs(spec, where)
    n = len(raw)
    scopes = [as_scope(s, mode == "thresholds", where) for s in raw]
    given = {"nnz": nnz, "sparsity": sparsity, "thresholds": thresholds}[mode]
    per_spec = spec_hypers(given, treedef, n, where, mode)
    per_scores = spec_hypers(scores, treedef, n, where, "scores")
    hypers = []
    for sc, h, sco in zip(scopes, per_spec, per_scores):
        dev = _device(params, sc)
        hyper: Dict[str, Tensor] = {}
        if mode == "thresholds":
            hyper["thresholds"] = _thresholds(h, sc, _acc(params, sc), dev, where)
        else:
            hyper["nnz"] = _nnz(h if mode == "nnz" else None, h if mode == "sparsity" else None, sc, dev, where)
        if sco is not None:
            hyper["scores"] = _check_scores(sco, sc, dev, where)
        hypers.append(hyper)
    res = run(params, scopes, _select_kernel(p), hypers, where=where, aux={"values": values}, want=want)
    if "keep" in want:
        res["keep"] = torch.utils._pytree.tree_unflatten(res["keep"], treedef)
    return res


# ---------------------------------------------------------------------------
# public ops
# ---------------------------------------------------------------------------


def block_masks(params: Any, scope: Any, *, nnz: Any = None, sparsity: Any = None, thresholds: Any = None,
                values: Any = None, scores: Any = None, p: float = 2) -> Any:
    """Pure: which blocks survive, in scope layout.

    Args:
        params: Mapping of parameter name to tensor.
        scope: A ScopeSpec or ScopeCoupling (or a block spec, see module doc),
            or a spec tree.
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
        aligned with :func:`~sparsekit_fx.stats.scope_scores`; for a spec
        tree, the same structure holding one such tensor per spec.
    """
    return _select(params, scope, "block_masks", frozenset({"keep"}), nnz=nnz, sparsity=sparsity,
                   thresholds=thresholds, values=values, scores=scores, p=p)["keep"]


def masks(params: Any, scope: Any, *, nnz: Any = None, sparsity: Any = None, thresholds: Any = None,
          values: Any = None, scores: Any = None, p: float = 2) -> Dict[str, Tensor]:
    """Pure: element masks of the surviving blocks, one per parameter the spec touches.

    Arguments as in :func:`block_masks`.

    Returns:
        ``{name: BoolTensor[param_shape]}``, True = kept. Elements outside every
        view of the spec are True; a parameter touched by several specs of a
        tree gets the AND of their masks.
    """
    return _select(params, scope, "masks", frozenset({"mask"}), nnz=nnz, sparsity=sparsity,
                   thresholds=thresholds, values=values, scores=scores, p=p)["masks"]


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
    return _select(params, spec, "hard_threshold", frozenset({"x"}), nnz=nnz, sparsity=sparsity,
                   thresholds=thresholds, values=values, scores=scores, p=p)["params"]


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
    check_mapping(params, where, "params", "pass dict(model.named_parameters()).")
    out = dict(params)
    for name, m in masks.items():
        x = check_param(params, name, None, where, "params", named_by="masks")
        if not isinstance(m, Tensor) or tuple(m.shape) != tuple(x.shape):
            got = tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__
            raise ShapeMismatchError(describe(where, f"masks[{name!r}]", f"a tensor of shape {tuple(x.shape)}", got,
                                              "build masks with masks(params, spec, ...)."))
        if m.dtype == torch.bool:
            out[name] = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))
        else:
            out[name] = x * m.to(x.dtype)
    return out
