"""Spec trees: flattening, per-spec hyper-parameters, layout signatures and levels.

A *spec tree* is a single spec or any tuple/list/dict nesting of specs (e.g.
one ScopeSpec per matrix of a model). Ops applied to a tree act spec by spec,
in tree order: a spec that touches a parameter already touched by an earlier
spec sees that spec's result (so ``masks`` and ``hard_threshold`` of a tree
stay consistent: ``apply_masks(p, masks(p, t)) == hard_threshold(p, t)``).
Specs are grouped into *levels* (a spec's level is one more than the highest
level of earlier specs sharing a parameter); within a level, specs with the
same *layout signature* (equal up to parameter names) are batched.

Everything here is static Python over specs: it runs once at trace time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Hashable, List, Sequence, Tuple

from torch.utils import _pytree as pytree

from .errors import ArgumentError, SpecError, describe
from .specs import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View, is_spec

__all__ = ["flatten_specs", "spec_hypers", "signature", "levels", "groups"]


def flatten_specs(tree: Any, where: str) -> Tuple[List[Any], Any]:
    """Pure: the specs of a spec tree in order, and the tree structure.

    Raises:
        SpecError: A leaf of the tree is not a spec, or the tree is empty.
    """
    specs, treedef = pytree.tree_flatten(tree, is_leaf=is_spec)
    bad = [s for s in specs if not is_spec(s)]
    if bad or not specs:
        got = type(bad[0]).__name__ if bad else "an empty tree"
        raise SpecError(
            describe(where, "spec", "a spec or a tuple/list/dict of specs", got,
                     "pass ScopeSpec/ScopeCoupling/BlockSpec/BlockCoupling objects (or containers of them).")
        )
    return specs, treedef


def spec_hypers(value: Any, treedef: Any, count: int, where: str, arg: str) -> List[Any]:
    """Pure: one hyper-parameter per spec: a shared value, or a tree matching the specs.

    A number, tensor or ``None`` is shared by every spec. A tuple/list/dict
    with the spec tree's structure gives one value per spec.
    """
    if not isinstance(value, (tuple, list, Mapping)):
        return [value] * count
    leaves, vdef = pytree.tree_flatten(value, is_leaf=lambda x: not isinstance(x, (tuple, list, Mapping)))
    if vdef != treedef:
        raise ArgumentError(
            describe(where, arg, f"one shared value, or a container shaped like the spec tree ({count} specs)",
                     f"a {type(value).__name__} of {len(leaves)} entries that does not match the tree's structure",
                     f"pass a single {arg}, or one entry per spec in the same tuple/list/dict structure.")
        )
    return leaves


def signature(spec: Any) -> Hashable:
    """Pure: a hashable layout key equal for specs that differ only in parameter names.

    Names are replaced by their first-occurrence index within the spec, so the
    pattern of which views share a parameter is kept.
    """
    names: Dict[str, int] = {}

    def sig(s: Any) -> Hashable:
        if isinstance(s, View):
            slot = names.setdefault(s.param, len(names))
            return ("V", slot, s.param_shape, s.shape, s.stride, s.offset)
        if isinstance(s, BlockSpec):
            return ("B", sig(s.view), s.shape, _extra(s))
        if isinstance(s, BlockCoupling):
            return ("BC", tuple(sig(x) for x in s.specs), s.orders)
        if isinstance(s, ScopeSpec):
            return ("S", sig(s.block), s.shape)
        if isinstance(s, ScopeCoupling):
            return ("SC", tuple(sig(x) for x in s.scopes), s.orders)
        raise SpecError(describe("signature", "spec", "a spec", type(s).__name__, "pass a spec."))

    return sig(spec)


def _extra(block: BlockSpec) -> Hashable:
    """Layout fields of a BlockSpec beyond view and shape (future-proof for options)."""
    return tuple(
        (f, getattr(block, f))
        for f, fld in block.__dataclass_fields__.items()
        if fld.compare and f not in ("view", "shape")
    )


def levels(specs: Sequence[Any]) -> List[List[int]]:
    """Pure: spec indices grouped by level, in tree order within each level."""
    last: Dict[str, int] = {}
    out: List[List[int]] = []
    for i, s in enumerate(specs):
        lvl = 0
        for p in s.params():
            if p in last and last[p] + 1 > lvl:
                lvl = last[p] + 1
        for p in s.params():
            last[p] = lvl
        while len(out) <= lvl:
            out.append([])
        out[lvl].append(i)
    return out


def groups(specs: Sequence[Any], indices: Sequence[int]) -> List[List[int]]:
    """Pure: ``indices`` grouped by layout signature, first-seen order."""
    by_sig: Dict[Hashable, List[int]] = {}
    for i in indices:
        by_sig.setdefault(signature(specs[i]), []).append(i)
    return list(by_sig.values())
