"""Masks as data: merging, expanding block masks, and compact storage.

* :func:`merge_masks` ANDs element-mask dicts (how separately built trees,
  e.g. coupled channels then 2:4, compose).
* :func:`expand_block_masks` turns block masks (scope layout, as returned by
  :func:`~sparsekit_fx.block_masks`) into element masks without params.
* :func:`masks_to_state_dict` / :func:`masks_from_state_dict` store a tree's
  block masks bit-packed, eight to a byte, with the spec tree's JSON, so a
  saved file is self-describing::

      {"format": "sparsekit_fx.masks", "version": 1, "specs": "<JSON of the tree>",
       "blocks.0": uint8[ceil(numblk_0 / 8)], "blocks.1": ..., ...}

  with ``blocks.<i>`` for the i-th spec in tree order. It holds only strings, ints and tensors, so ``torch.save`` / ``torch.load``
(including ``weights_only=True``) round-trip it. A 2:4 mask costs one bit per
pair of kept/pruned weights' block (1/32 of the float32 weights), a channel
mask one bit per channel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Dict, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

from .errors import ArgumentError, FormatError, ParamError, ShapeMismatchError, SpecError, describe
from .layout import scope_to_params
from .serialize import specs_from_json, specs_to_json
from .specs import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec
from .tree import flatten_specs

__all__ = [
    "merge_masks",
    "expand_block_masks",
    "MASKS_FORMAT",
    "MASKS_VERSION",
    "pack_bits",
    "unpack_bits",
    "masks_to_state_dict",
    "masks_from_state_dict",
]

#: The ``"format"`` tag of a mask state dict.
MASKS_FORMAT = "sparsekit_fx.masks"
#: The schema version this library writes and reads.
MASKS_VERSION = 1

_WEIGHTS = (1 << torch.arange(7, -1, -1)).to(torch.uint8)  # MSB first


def pack_bits(mask: Tensor) -> Tensor:
    """Pure: a bool tensor packed 8 entries per byte (row-major, MSB first).

    Returns:
        A 1-d uint8 tensor of ``ceil(mask.numel() / 8)`` bytes; pad bits are 0.
    """
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.reshape(-1, 8) * _WEIGHTS.to(flat.device)).sum(-1, dtype=torch.uint8)


def unpack_bits(packed: Tensor, shape: Sequence[int]) -> Tensor:
    """Pure: inverse of :func:`pack_bits`: a bool tensor of ``shape``.

    Raises:
        ShapeMismatchError: ``packed`` is not uint8 or has the wrong length for ``shape``.
    """
    n = math.prod(shape)
    if not isinstance(packed, Tensor) or packed.dtype != torch.uint8 or packed.numel() != (n + 7) // 8:
        got = (packed.dtype, tuple(packed.shape)) if isinstance(packed, Tensor) else type(packed).__name__
        raise ShapeMismatchError(describe("unpack_bits", "packed", f"a uint8 tensor of {(n + 7) // 8} bytes "
                                          f"for shape {tuple(shape)}", got, "unpack with the shape that was packed."))
    bits = (packed.reshape(-1, 1) & _WEIGHTS.to(packed.device)) != 0
    return bits.reshape(-1)[:n].reshape(tuple(shape))


# ---------------------------------------------------------------------------
# element masks: merge, expand
# ---------------------------------------------------------------------------


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


def _scope_of(spec: Any, where: str) -> Any:
    if isinstance(spec, (BlockSpec, BlockCoupling)):
        return ScopeSpec(spec, ())  # one scope of all blocks: its row-major order is the grid order
    if isinstance(spec, (ScopeSpec, ScopeCoupling)):
        return spec
    raise SpecError(describe(where, "spec", "a block or scope spec", type(spec).__name__,
                             "pass the spec the block masks were computed with."))


def _expand_one(spec: Any, keep: Any, where: str, arg: str) -> Dict[str, Tensor]:
    scope = _scope_of(spec, where)
    want = tuple(scope.grid_shape) + (scope.numblk_per_scope(),)
    if not isinstance(keep, Tensor):
        raise ParamError(describe(where, arg, f"a bool tensor of shape {want}", type(keep).__name__,
                                  "pass block_masks(params, spec, ...)."))
    # A block spec's masks come in either layout block_masks gives it (one scope of all blocks with
    # nnz/sparsity, one scope per block with thresholds): both hold numblk entries in grid order.
    if keep.numel() != scope.numblk() or (scope is spec and tuple(keep.shape) != want):
        raise ShapeMismatchError(describe(where, arg, f"shape {want} (the spec's scope layout)", tuple(keep.shape),
                                          "expand masks with the spec they were computed with."))
    spread = scope_to_params(scope, keep.reshape(want).to(torch.uint8), 1)
    return {name: m != 0 for name, m in spread.items()}


def _flat_masks(tree: Any, block_masks: Any, where: str) -> Tuple[list, list, Any]:
    specs, treedef = flatten_specs(tree, where)
    keeps = pytree.tree_leaves(block_masks)
    if len(keeps) != len(specs):
        raise ArgumentError(describe(where, "block_masks", f"{len(specs)} block masks (one per spec, shaped like "
                                     "the tree)", f"{len(keeps)}", "pass what block_masks(params, tree, ...) returned."))
    return specs, keeps, treedef


def expand_block_masks(tree: Any, block_masks: Any) -> Dict[str, Tensor]:
    """Pure: element masks from block masks, without params.

    Args:
        tree: A spec or a spec tree.
        block_masks: What :func:`~sparsekit_fx.block_masks` returned for it:
            one tensor per spec, in the tree's structure. A scope spec's mask
            is in scope layout ``(*grid_shape, numblk_per_scope)``; a block
            spec's may be either layout ``block_masks`` gives it.

    Returns:
        ``{name: BoolTensor[param_shape]}``, AND-merged over the tree;
        elements outside every view are True.
    """
    where = "expand_block_masks"
    specs, keeps, _ = _flat_masks(tree, block_masks, where)
    return merge_masks(*(_expand_one(s, k, where, f"block_masks[{i}]") for i, (s, k) in enumerate(zip(specs, keeps))))


def _layout(spec: Any) -> Tuple[int, ...]:
    if isinstance(spec, (ScopeSpec, ScopeCoupling)):
        return tuple(spec.grid_shape) + (spec.numblk_per_scope(),)
    return tuple(spec.grid_shape)


def masks_to_state_dict(tree: Any, block_masks: Any) -> Dict[str, Any]:
    """Pure: a compact, self-describing mapping of a tree's block masks.

    Args:
        tree: A spec or a spec tree.
        block_masks: What :func:`~sparsekit_fx.block_masks` returned for it
            (one bool tensor per spec, in the tree's structure).

    Returns:
        ``{"format", "version", "specs", "blocks.<i>"...}`` (see module doc);
        pass it to ``torch.save``.

    Raises:
        ArgumentError: The number of masks differs from the number of specs.
        ShapeMismatchError: A mask does not match its spec's layout.
    """
    where = "masks_to_state_dict"
    specs, keeps, _ = _flat_masks(tree, block_masks, where)
    out: Dict[str, Any] = {"format": MASKS_FORMAT, "version": MASKS_VERSION, "specs": specs_to_json(tree, indent=None)}
    for i, (s, k) in enumerate(zip(specs, keeps)):
        want = _layout(s)
        if not isinstance(k, Tensor) or k.numel() != math.prod(want):
            got = tuple(k.shape) if isinstance(k, Tensor) else type(k).__name__
            raise ShapeMismatchError(describe(where, f"block_masks[{i}]", f"a mask of shape {want}", got,
                                              "save the masks computed with this tree."))
        out[f"blocks.{i}"] = pack_bits(k.detach().to("cpu") != 0)
    return out


def masks_from_state_dict(state: Any) -> Tuple[Any, Any]:
    """Pure: the spec tree and block masks stored by :func:`masks_to_state_dict`.

    Returns:
        ``(tree, block_masks)``: the spec tree as saved, and its block masks in
        the same structure (scope layout for scope specs, ``grid_shape`` for
        block specs). Expand them with :func:`expand_block_masks`.

    Raises:
        FormatError: Not a sparsekit_fx mask mapping, an unsupported version,
            a missing or mis-sized entry, or a bad spec tree inside.
    """
    where = "masks_from_state_dict"
    if not isinstance(state, Mapping) or state.get("format") != MASKS_FORMAT:
        got = state.get("format") if isinstance(state, Mapping) else type(state).__name__
        raise FormatError(describe(where, "format", repr(MASKS_FORMAT), repr(got),
                                   "load a file written from masks_to_state_dict(...) with torch.save."))
    version = state.get("version")
    if version != MASKS_VERSION or isinstance(version, bool):
        hint = ("it was written by a newer sparsekit_fx; upgrade" if isinstance(version, int) and
                version > MASKS_VERSION else "re-create and re-save the masks with this version")
        raise FormatError(describe(where, "version", f"schema version {MASKS_VERSION}", repr(version), hint + "."))
    tree = specs_from_json(state.get("specs", ""))
    specs, treedef = flatten_specs(tree, where)
    keeps = []
    for i, s in enumerate(specs):
        key = f"blocks.{i}"
        if key not in state:
            raise FormatError(describe(where, key, f"packed block masks for spec {i}", "no such entry",
                                       "the mapping is incomplete; re-save it."))
        try:
            keeps.append(unpack_bits(state[key], _layout(s)))
        except ShapeMismatchError as e:
            raise FormatError(describe(where, key, f"the packed masks of spec {i}", str(e),
                                       "the mapping does not match its spec tree; re-save it.")) from e
    return tree, pytree.tree_unflatten(keeps, treedef)
