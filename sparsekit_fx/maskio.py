"""Masks to and from a ``state_dict``-style mapping, stored compactly.

Block masks (one bool tensor per spec, in scope layout, as returned by
:func:`~sparsekit_fx.tree_block_masks`) are bit-packed eight to a byte and
stored with the spec tree's JSON, so a saved file is self-describing::

    {"format": "sparsekit_fx.masks", "version": 1, "specs": "<JSON of the tree>",
     "blocks.0": uint8[ceil(numblk_0 / 8)], "blocks.1": ..., ...}

It holds only strings, ints and tensors, so ``torch.save`` / ``torch.load``
(including ``weights_only=True``) round-trip it. A 2:4 mask costs one bit per
pair of kept/pruned weights' block (1/32 of the float32 weights), a channel
mask one bit per channel. :func:`~sparsekit_fx.expand_block_masks` turns the
loaded block masks back into element masks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Dict, Sequence, Tuple

import torch
from torch import Tensor

from .errors import FormatError, ShapeMismatchError, describe
from .serialize import specs_from_json, specs_to_json
from .specs import ScopeCoupling, ScopeSpec
from .tree import as_tree

__all__ = [
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


def _layout(spec: Any) -> Tuple[int, ...]:
    if isinstance(spec, (ScopeSpec, ScopeCoupling)):
        return tuple(spec.grid_shape) + (spec.numblk_per_scope(),)
    return tuple(spec.grid_shape)


def masks_to_state_dict(tree: Any, block_masks: Any) -> Dict[str, Any]:
    """Pure: a compact, self-describing mapping of a tree's block masks.

    Args:
        tree: A spec or a tuple of specs.
        block_masks: One bool mask per spec (a single tensor for a single
            spec): scope layout for scope specs, ``grid_shape`` for block specs.

    Returns:
        ``{"format", "version", "specs", "blocks.<i>"...}`` (see module doc);
        pass it to ``torch.save``.

    Raises:
        ShapeMismatchError: A mask does not match its spec's layout.
    """
    where = "masks_to_state_dict"
    single = not isinstance(tree, (tuple, list))
    tree = as_tree(tree, where)
    keeps = (block_masks,) if single else tuple(block_masks)
    if len(keeps) != len(tree):
        raise ShapeMismatchError(describe(where, "block_masks", f"{len(tree)} masks (one per spec)", len(keeps),
                                          "pass the tuple returned by tree_block_masks."))
    out: Dict[str, Any] = {"format": MASKS_FORMAT, "version": MASKS_VERSION, "specs": specs_to_json(tree, indent=None)}
    for i, (s, k) in enumerate(zip(tree, keeps)):
        want = _layout(s)
        if not isinstance(k, Tensor) or k.numel() != math.prod(want):
            got = tuple(k.shape) if isinstance(k, Tensor) else type(k).__name__
            raise ShapeMismatchError(describe(where, f"block_masks[{i}]", f"a mask of shape {want}", got,
                                              "save the masks computed with this tree."))
        out[f"blocks.{i}"] = pack_bits(k.detach().to("cpu") != 0)
    return out


def masks_from_state_dict(state: Any) -> Tuple[Tuple[Any, ...], Tuple[Tensor, ...]]:
    """Pure: the spec tree and block masks stored by :func:`masks_to_state_dict`.

    Returns:
        ``(tree, block_masks)``: the tuple of specs and one bool tensor per
        spec in its layout (scope layout for scope specs). Expand them with
        :func:`~sparsekit_fx.expand_block_masks`.

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
    keeps = []
    for i, s in enumerate(tree):
        key = f"blocks.{i}"
        if key not in state:
            raise FormatError(describe(where, key, f"packed block masks for spec {i}", "no such entry",
                                       "the mapping is incomplete; re-save it."))
        try:
            keeps.append(unpack_bits(state[key], _layout(s)))
        except ShapeMismatchError as e:
            raise FormatError(describe(where, key, f"the packed masks of spec {i}", str(e),
                                       "the mapping does not match its spec tree; re-save it.")) from e
    return tree, tuple(keeps)
