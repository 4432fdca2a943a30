"""Spec trees: a tuple of specs, applied one spec at a time.

A spec tree is simply a tuple of specs (what :func:`~sparsekit_fx.specs_from_module`
and :meth:`~sparsekit_fx.SpecBuilder.build` return). The helpers here loop over
its specs and call the single-spec ops, so they compile to one graph when
called inside a compiled function (the loop unrolls over static specs).
Hyper-parameters are either one value for every spec or a tuple with one
value per spec.

Element masks of several specs touching one parameter are combined with a
logical AND (an element is kept only if every spec keeps it), which is also
how separately built trees compose, e.g. coupled channels then 2:4.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Sequence, Tuple

import torch
from torch import Tensor

from .errors import ArgumentError, ParamError, ShapeMismatchError, SpecError, describe
from .layout import expand_grid, scope_to_view_grids, write_views
from .ops import block_masks, hard_threshold, masks
from .specs import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, is_spec

__all__ = [
    "as_tree",
    "tree_block_masks",
    "tree_masks",
    "tree_hard_threshold",
    "expand_block_masks",
    "merge_masks",
]


def as_tree(spec_or_tree: Any, where: str = "as_tree") -> Tuple[Any, ...]:
    """Pure: a spec tree (tuple of specs) from one spec or a sequence of specs.

    Raises:
        SpecError: Empty, or an entry is not a spec.
    """
    items = (spec_or_tree,) if is_spec(spec_or_tree) else spec_or_tree
    if not isinstance(items, (tuple, list)) or not items:
        raise SpecError(describe(where, "specs", "a spec or a non-empty tuple of specs",
                                 type(spec_or_tree).__name__, "pass e.g. (scope1, scope2)."))
    for i, s in enumerate(items):
        if not is_spec(s):
            raise SpecError(describe(where, f"specs[{i}]", "a View, BlockSpec, BlockCoupling, ScopeSpec or "
                                     "ScopeCoupling", type(s).__name__, "pass specs only."))
    return tuple(items)


def _per_spec(value: Any, n: int, where: str, arg: str) -> Tuple[Any, ...]:
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ArgumentError(describe(where, arg, f"one value for all specs or a tuple of {n} (one per spec)",
                                         f"{len(value)} values", "match the number of specs in the tree."))
        return tuple(value)
    return (value,) * n


def _hyper(tree: Tuple[Any, ...], where: str, **hyper: Any) -> Sequence[Dict[str, Any]]:
    given = {k: _per_spec(v, len(tree), where, k) for k, v in hyper.items() if v is not None}
    return [{k: v[i] for k, v in given.items()} for i in range(len(tree))]


def tree_block_masks(params: Any, tree: Any, *, nnz: Any = None, sparsity: Any = None, thresholds: Any = None,
                     values: Any = None, p: float = 2) -> Tuple[Tensor, ...]:
    """Pure: :func:`~sparsekit_fx.block_masks` of every spec of ``tree``.

    Args:
        params: Mapping of parameter name to tensor.
        tree: A spec or a tuple of specs.
        nnz, sparsity, thresholds: Exactly one, as in ``block_masks``: one
            value for all specs, or a tuple with one value per spec.
        values: Score these tensors instead of params.
        p: Norm order.

    Returns:
        One bool tensor per spec, in scope layout (True = kept).
    """
    tree = as_tree(tree, "tree_block_masks")
    return tuple(block_masks(params, s, values=values, p=p, **h)
                 for s, h in zip(tree, _hyper(tree, "tree_block_masks", nnz=nnz, sparsity=sparsity,
                                              thresholds=thresholds)))


def tree_masks(params: Any, tree: Any, *, nnz: Any = None, sparsity: Any = None, thresholds: Any = None,
               values: Any = None, p: float = 2) -> Dict[str, Tensor]:
    """Pure: element masks of every spec of ``tree``, AND-merged per parameter.

    Arguments as in :func:`tree_block_masks`.

    Returns:
        ``{name: BoolTensor[param_shape]}`` for every parameter the tree touches.
    """
    tree = as_tree(tree, "tree_masks")
    hs = _hyper(tree, "tree_masks", nnz=nnz, sparsity=sparsity, thresholds=thresholds)
    return merge_masks(*(masks(params, s, values=values, p=p, **h) for s, h in zip(tree, hs)))


def tree_hard_threshold(params: Any, tree: Any, *, nnz: Any = None, sparsity: Any = None, thresholds: Any = None,
                        values: Any = None, p: float = 2) -> Dict[str, Tensor]:
    """Pure: :func:`~sparsekit_fx.hard_threshold` with every spec of ``tree`` in turn.

    Each spec scores the output of the previous one (so a later spec never
    revives what an earlier one zeroed). Arguments as in :func:`tree_block_masks`.

    Returns:
        A new params dict; entries no spec touches are the same objects. The
        original input is left unchanged.
    """
    tree = as_tree(tree, "tree_hard_threshold")
    out = params
    for s, h in zip(tree, _hyper(tree, "tree_hard_threshold", nnz=nnz, sparsity=sparsity, thresholds=thresholds)):
        out = hard_threshold(out, s, values=values, p=p, **h)
    return dict(out)


def merge_masks(*mask_dicts: Any) -> Dict[str, Tensor]:
    """Pure: AND-merge element-mask dicts (True = kept) key by key.

    Raises:
        ParamError: An argument is not a mapping.
        ShapeMismatchError: Two masks of one name differ in shape.
    """
    out: Dict[str, Tensor] = {}
    for i, md in enumerate(mask_dicts):
        if not isinstance(md, Mapping):
            raise ParamError(describe("merge_masks", f"mask_dicts[{i}]", "a mapping of name -> bool mask",
                                      type(md).__name__, "pass dicts returned by masks(...)."))
        for name, m in md.items():
            if name not in out:
                out[name] = m
                continue
            if tuple(m.shape) != tuple(out[name].shape):
                raise ShapeMismatchError(describe("merge_masks", f"mask_dicts[{i}][{name!r}]",
                                                  f"shape {tuple(out[name].shape)}", tuple(m.shape),
                                                  "merge masks of the same parameters."))
            out[name] = out[name] & m
    return out


# ---------------------------------------------------------------------------
# block masks -> element masks (no params needed)
# ---------------------------------------------------------------------------


def _leaf_blocks(spec: Any) -> Sequence[BlockSpec]:
    if isinstance(spec, BlockSpec):
        return [spec]
    if isinstance(spec, BlockCoupling):
        return list(spec.specs)
    if isinstance(spec, ScopeSpec):
        return _leaf_blocks(spec.block)
    return [b for s in spec.scopes for b in _leaf_blocks(s)]


def _expand_one(spec: Any, keep: Any, where: str, arg: str) -> Dict[str, Tensor]:
    if isinstance(spec, (BlockSpec, BlockCoupling)):
        scope: Any = ScopeSpec(spec, ())  # one scope of all blocks: row-major order == grid order
    elif isinstance(spec, (ScopeSpec, ScopeCoupling)):
        scope = spec
    else:
        raise SpecError(describe(where, "spec", "a block or scope spec", type(spec).__name__,
                                 "pass the spec the block masks were computed with."))
    want = tuple(scope.grid_shape) + (scope.numblk_per_scope(),)
    if not isinstance(keep, Tensor):
        raise ParamError(describe(where, arg, f"a bool tensor of shape {want}", type(keep).__name__,
                                  "pass block_masks(params, spec, ...)."))
    if keep.numel() != scope.numblk() or (isinstance(spec, (ScopeSpec, ScopeCoupling)) and tuple(keep.shape) != want):
        raise ShapeMismatchError(describe(where, arg, f"shape {want} (the spec's scope layout)", tuple(keep.shape),
                                          "expand masks with the spec they were computed with."))
    keep = keep.reshape(want).to(torch.uint8)
    grids = scope_to_view_grids(scope, keep)
    per_view = [expand_grid(g, b.shape) for g, b in zip(grids, _leaf_blocks(scope))]
    groups: Dict[str, Any] = {}
    for v, m in zip(scope.views(), per_view):
        vs, ms = groups.setdefault(v.param, ([], []))
        vs.append(v)
        ms.append(m)
    out = {}
    for name, (vs, ms) in groups.items():
        if len(vs) == 1 and vs[0].is_whole:
            out[name] = ms[0] != 0
        else:
            base = torch.ones(vs[0].param_shape, dtype=torch.uint8, device=keep.device)
            out[name] = write_views(base, vs, ms) != 0
    return out


def expand_block_masks(tree: Any, block_masks: Any) -> Dict[str, Tensor]:
    """Pure: element masks from block masks, without params.

    Args:
        tree: A spec or a tuple of specs.
        block_masks: For one spec, its block mask; for a tree, one per spec
            (as returned by :func:`tree_block_masks`). A scope spec's mask is
            in scope layout ``(*grid_shape, numblk_per_scope)``; a block spec's
            may be any shape holding ``numblk`` entries in grid order.

    Returns:
        ``{name: BoolTensor[param_shape]}``, AND-merged over the tree;
        elements outside every view are True.
    """
    where = "expand_block_masks"
    single = is_spec(tree)
    tree = as_tree(tree, where)
    keeps = (block_masks,) if single else block_masks
    if not isinstance(keeps, (tuple, list)) or len(keeps) != len(tree):
        raise ArgumentError(describe(where, "block_masks", f"{len(tree)} block masks (one per spec)",
                                     type(block_masks).__name__ if not isinstance(keeps, (tuple, list))
                                     else f"{len(keeps)}", "pass the tuple returned by tree_block_masks."))
    return merge_masks(*(_expand_one(s, k, where, f"block_masks[{i}]") for i, (s, k) in enumerate(zip(tree, keeps))))

