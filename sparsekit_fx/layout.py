"""Tensor layout: views in and out of parameters, blocks, scopes and couplings.

Every function here is a pure reshaping of tensors driven by static spec
facts. Only view-like operations (``reshape``, ``unflatten``, ``unfold``,
``narrow``, ``permute``) and, for strided views with gaps, a scatter with
static indices are used, so all of them are safe under ``torch.compile``,
``vmap`` and ``grad`` (``as_strided`` is not: it ignores vmap's batch dim).

Shapes, in the notation used throughout the package:

* view-shaped: ``view.shape``;
* interleaved: ``(G0, b0, G1, b1, ...)`` for grid ``G`` and block ``b``;
* blocks: ``(*grid_shape, numel_per_block)``;
* scopes: ``(*scope_grid_shape, numblk_per_scope)``.

Partial edge blocks (``BlockSpec(..., pad=True)``): the block functions take
the spec's ``padding`` (elements added at the high end of each view dim).
Going *to* blocks pads with ``F.pad`` and a caller-chosen fill value (the
neutral element of the statistic at hand); coming *back* crops with static
slicing. Both are safe under compile and vmap, and padding never reaches a
parameter.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .specs import BlockCoupling, BlockSpec, ScopeSpec, View

__all__ = [
    "pack_bool",
    "read_view",
    "write_views",
    "interleave",
    "pad_trailing",
    "crop_trailing",
    "grid_to_interleaved",
    "to_blocks",
    "from_blocks",
    "expand_grid",
    "to_scopes",
    "from_scopes",
    "permute_grid",
    "unpermute_grid",
    "inverse_permutation",
    "block_specs",
    "by_param",
    "views_to_param",
    "scope_to_view_grids",
    "block_to_view_grids",
    "scope_to_params",
]

Shape = Tuple[int, ...]


def inverse_permutation(order: Sequence[int]) -> Shape:
    """Pure: the permutation ``inv`` with ``inv[order[i]] == i``."""
    inv = [0] * len(order)
    for i, o in enumerate(order):
        inv[o] = i
    return tuple(inv)


# ---------------------------------------------------------------------------
# views of parameters
# ---------------------------------------------------------------------------


def read_view(param: Tensor, view: View) -> Tensor:
    """Pure: the elements of ``view`` as a tensor of shape ``view.shape``.

    The result is a view of ``param`` when ``param`` is contiguous (no copy).
    Dimensions are peeled off largest-stride first: a dense step is an
    ``unflatten``, a step with gaps is an ``unfold``.
    """
    if view.is_whole:
        return param
    geo = view.geometry
    t = param.reshape(-1)
    if view.offset != 0 or geo.extent != t.shape[-1]:
        t = t.narrow(-1, view.offset, geo.extent)
    for j, d in enumerate(geo.order):
        inner = geo.windows[j + 1]
        n, step = view.shape[d], view.stride[d]
        if step == inner:
            t = t.unflatten(-1, (n, inner))
        else:
            t = t.unfold(-1, inner, step)
    t = t.squeeze(-1)  # the innermost window has length 1
    # t's dims follow geo.order; put them back in view order, then add unit dims.
    t = t.permute(_rank(geo.order))
    return t.reshape(view.shape)


def _rank(order: Sequence[int]) -> Shape:
    """Pure: position of each of ``order``'s dims among them, by dim index."""
    by_dim = sorted(range(len(order)), key=lambda i: order[i])
    return tuple(by_dim)


def _memory_flat(values: Tensor, view: View) -> Tensor:
    """Pure: view-shaped ``values`` flattened in the parameter's element order."""
    geo = view.geometry
    unit = [d for d in range(view.ndim) if d not in geo.order]
    return values.permute(tuple(geo.order) + tuple(unit)).reshape(-1)


def _flat_positions(view: View, device: torch.device) -> Tensor:
    """Pure: flat parameter index of every view element, in view order."""
    pos = torch.full((), view.offset, dtype=torch.long, device=device)
    for d, (n, s) in enumerate(zip(view.shape, view.stride)):
        if n == 1:
            continue
        shape = [1] * view.ndim
        shape[d] = n
        pos = pos + (torch.arange(n, device=device) * s).reshape(shape)
    return pos.expand(view.shape).reshape(-1)


def write_views(param: Tensor, views: Sequence[View], values: Sequence[Tensor]) -> Tensor:
    """Pure: a new tensor equal to ``param`` with each view replaced by its values.

    Args:
        param: The original parameter (never modified).
        views: Disjoint views of ``param``.
        values: One view-shaped tensor per view.

    Returns:
        A tensor of ``param``'s shape. Elements outside every view are copied
        from ``param``. Dense views are assembled with ``cat``; views with gaps
        use a scatter with static indices.
    """
    if len(views) == 1 and views[0].is_whole:
        return values[0]
    shape = tuple(param.shape)
    if all(v.geometry.dense for v in views):
        numel = views[0].param_numel()
        flat = None
        pieces: List[Tensor] = []
        cursor = 0
        for v, x in sorted(zip(views, values), key=lambda vx: vx[0].offset):
            if v.offset > cursor:
                flat = param.reshape(-1) if flat is None else flat
                pieces.append(flat[cursor : v.offset])
            pieces.append(_memory_flat(x, v))
            cursor = v.offset + v.numel()
        if cursor < numel:
            flat = param.reshape(-1) if flat is None else flat
            pieces.append(flat[cursor:])
        out = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        return out.reshape(shape)
    out = param.reshape(-1)
    for v, x in zip(views, values):
        out = out.index_put((_flat_positions(v, param.device),), x.reshape(-1))
    return out.reshape(shape)


# ---------------------------------------------------------------------------
# blocks
# ---------------------------------------------------------------------------


def pad_trailing(x: Tensor, padding: Shape, value: float = 0.0) -> Tensor:
    """Pure: pad the last ``len(padding)`` dims of ``x`` at their high end with ``value``.

    ``padding[d]`` elements are appended to dim ``d``; leading (batch) dims
    are left alone. Returns ``x`` itself when there is no padding.
    """
    if not any(padding):
        return x
    pads: List[int] = []
    for p in reversed(tuple(padding)):
        pads += [0, p]
    return F.pad(x, pads, value=value)


def crop_trailing(x: Tensor, shape: Shape) -> Tensor:
    """Pure: the first ``shape[d]`` entries of each of the last ``len(shape)`` dims of ``x``.

    Static slicing (a view, no copy); returns ``x`` itself when nothing is cut.
    """
    n = len(shape)
    if tuple(x.shape[x.ndim - n :]) == tuple(shape):
        return x
    return x[(Ellipsis,) + tuple(slice(0, s) for s in shape)]


def _unpadded(shape: Sequence[int], padding: Shape) -> Shape:
    return tuple(s - p for s, p in zip(shape, padding))


def interleave(x: Tensor, block_shape: Shape, padding: Shape = (), value: float = 0.0) -> Tensor:
    """Pure: view-shaped ``x`` as ``(G0, b0, G1, b1, ...)``.

    With ``padding`` (partial edge blocks) ``x`` is first padded with ``value``.
    """
    x = pad_trailing(x, padding, value)
    split: List[int] = []
    for s, b in zip(x.shape[x.ndim - len(block_shape) :], block_shape):
        split += [s // b, b]
    return x.reshape(tuple(x.shape[: x.ndim - len(block_shape)]) + tuple(split))


def grid_to_interleaved(g: Tensor, ndim: int) -> Tensor:
    """Pure: grid-shaped ``g`` as ``(G0, 1, G1, 1, ...)``, to broadcast over blocks."""
    lead = tuple(g.shape[: g.ndim - ndim])
    shape: List[int] = []
    for s in g.shape[g.ndim - ndim :]:
        shape += [s, 1]
    return g.reshape(lead + tuple(shape))


def odd_dims(ndim: int) -> Shape:
    """Pure: the block dims ``(-2n+1, ..., -1)`` of an interleaved tensor, as negatives."""
    return tuple(range(-2 * ndim + 1, 0, 2))


def to_blocks(x: Tensor, block_shape: Shape, padding: Shape = (), value: float = 0.0) -> Tensor:
    """Pure: view-shaped ``x`` as ``(*grid_shape, numel_per_block)``.

    Elements of a block are in row-major order of the block. With
    ``padding``, the missing elements of edge blocks hold ``value``.
    """
    n = len(block_shape)
    lead = x.ndim - n
    t = interleave(x, block_shape, padding, value)
    perm = tuple(range(lead)) + tuple(lead + 2 * i for i in range(n)) + tuple(lead + 2 * i + 1 for i in range(n))
    t = t.permute(perm)
    grid = tuple(t.shape[lead : lead + n])
    return t.reshape(tuple(x.shape[:lead]) + grid + (-1,))


def from_blocks(b: Tensor, block_shape: Shape, padding: Shape = ()) -> Tensor:
    """Pure: inverse of :func:`to_blocks`; returns a view-shaped tensor (padding cropped)."""
    n = len(block_shape)
    lead = b.ndim - 1 - n
    grid = tuple(b.shape[lead : lead + n])
    t = b.reshape(tuple(b.shape[:lead]) + grid + tuple(block_shape))
    perm = list(range(lead))
    for i in range(n):
        perm += [lead + i, lead + n + i]
    t = t.permute(tuple(perm))
    full = tuple(g * s for g, s in zip(grid, block_shape))
    t = t.reshape(tuple(b.shape[:lead]) + full)
    return crop_trailing(t, _unpadded(full, padding)) if any(padding) else t


def expand_grid(g: Tensor, block_shape: Shape, padding: Shape = ()) -> Tensor:
    """Pure: grid-shaped ``g`` repeated over each block, giving a view-shaped tensor.

    With ``padding`` the result is cropped to the view (edge blocks are partial).
    """
    n = len(block_shape)
    t = grid_to_interleaved(g, n)
    lead = tuple(g.shape[: g.ndim - n])
    inter: List[int] = []
    for s, b in zip(g.shape[g.ndim - n :], block_shape):
        inter += [s, b]
    t = t.expand(lead + tuple(inter))
    full = tuple(s * b for s, b in zip(g.shape[g.ndim - n :], block_shape))
    t = t.reshape(lead + full)
    return crop_trailing(t, _unpadded(full, padding)) if any(padding) else t


# ---------------------------------------------------------------------------
# scopes and coupling alignment
# ---------------------------------------------------------------------------


def to_scopes(t: Tensor, scope_shape: Shape) -> Tensor:
    """Pure: block-grid-shaped ``t`` as ``(*scope_grid, numblk_per_scope)``.

    Blocks of a scope are in row-major order of the scope (the scope's
    flattened order, which breaks ties).
    """
    return to_blocks(t, scope_shape)


def from_scopes(t: Tensor, scope_shape: Shape) -> Tensor:
    """Pure: inverse of :func:`to_scopes`; returns a block-grid-shaped tensor."""
    return from_blocks(t, scope_shape)


def permute_grid(t: Tensor, order: Shape, trailing: int = 0) -> Tensor:
    """Pure: permute the grid dims of ``t`` by ``order``, keeping ``trailing`` dims last.

    Leading (batch) dims before the grid are kept in place.
    """
    n = len(order)
    lead = t.ndim - n - trailing
    perm = tuple(range(lead)) + tuple(lead + o for o in order) + tuple(range(lead + n, t.ndim))
    return t.permute(perm)


def unpermute_grid(t: Tensor, order: Shape, trailing: int = 0) -> Tensor:
    """Pure: inverse of :func:`permute_grid`."""
    return permute_grid(t, inverse_permutation(order), trailing)


# ---------------------------------------------------------------------------
# from scope / coupled layouts back to each view's block grid
# ---------------------------------------------------------------------------


def block_to_view_grids(block: object, t: Tensor) -> List[Tensor]:
    """Pure: split a coupled-grid tensor into one grid tensor per coupled spec.

    Args:
        block: A BlockSpec or BlockCoupling.
        t: ``(*lead, *block.grid_shape)``.

    Returns:
        One ``(*lead, *spec.grid_shape)`` tensor per ``block.views()`` entry.
    """
    if isinstance(block, BlockSpec):
        return [t]
    return [unpermute_grid(t, o) for o in block.orders]  # type: ignore[attr-defined]


def scope_to_view_grids(scope: object, t: Tensor) -> List[Tensor]:
    """Pure: scope-layout ``(*lead, *scope.grid_shape, numblk_per_scope)`` to per-view grids.

    Inverse of the regrouping done by :func:`~sparsekit_fx.stats.scores_of`:
    returns one ``(*lead, *spec.grid_shape)`` tensor per ``scope.views()`` entry.
    """
    if isinstance(scope, ScopeSpec):
        return block_to_view_grids(scope.block, from_scopes(t, scope.shape))
    out: List[Tensor] = []
    start = 0
    for s, o in zip(scope.scopes, scope.orders):  # type: ignore[attr-defined]
        n = s.numblk_per_scope()
        part = unpermute_grid(t[..., start : start + n], o, trailing=1)
        out += scope_to_view_grids(s, part)
        start += n
    return out


# ---------------------------------------------------------------------------
# per-view pieces back to whole parameters
# ---------------------------------------------------------------------------


def block_specs(spec: Any) -> List[BlockSpec]:
    """Pure: the BlockSpec behind each entry of ``spec.views()``, in the same order."""
    if isinstance(spec, BlockSpec):
        return [spec]
    if isinstance(spec, BlockCoupling):
        return list(spec.specs)
    if isinstance(spec, ScopeSpec):
        return block_specs(spec.block)
    return [b for s in spec.scopes for b in block_specs(s)]


def by_param(views: Sequence[View], items: Sequence[Any]) -> List[Any]:
    """Pure: ``(name, views, items)`` triples grouping ``items`` by their view's parameter."""
    grouped: Dict[str, Any] = {}
    for v, x in zip(views, items):
        vs, xs = grouped.setdefault(v.param, ([], []))
        vs.append(v)
        xs.append(x)
    return [(name, vs, xs) for name, (vs, xs) in grouped.items()]


def views_to_param(views: Sequence[View], values: Sequence[Tensor], fill: Any) -> Tensor:
    """Pure: a parameter-shaped tensor holding ``values`` in ``views`` and ``fill`` elsewhere.

    All views belong to one parameter. A single whole-parameter view returns its value as is.
    """
    if len(views) == 1 and views[0].is_whole:
        return values[0]
    base = torch.full(views[0].param_shape, fill, dtype=values[0].dtype, device=values[0].device)
    return write_views(base, views, values)


def scope_to_params(scope: Any, t: Tensor, fill: Any) -> Dict[str, Tensor]:
    """Pure: per-block values in scope layout spread over the elements of every parameter.

    Args:
        scope: A ScopeSpec or ScopeCoupling.
        t: ``(*scope.grid_shape, numblk_per_scope)`` values, one per block.
        fill: Value of the elements outside every view of ``scope``.

    Returns:
        ``{name: tensor of param_shape}`` (``t``'s dtype) for each parameter.
    """
    grids = scope_to_view_grids(scope, t)
    per_view = [expand_grid(g, b.shape, b.padding) for g, b in zip(grids, block_specs(scope))]
    return {name: views_to_param(vs, ms, fill) for name, vs, ms in by_param(scope.views(), per_view)}


# ---------------------------------------------------------------------------
# storage of bool results
# ---------------------------------------------------------------------------


def pack_bool(mask: Tensor) -> Tensor:
    """Pure: ``mask`` as a bool tensor written through 32-bit words.

    Inductor's CPU code stores bool and uint8 elements one at a time, which
    is several times slower than a float store; 32-bit stores vectorise. So
    every 4 adjacent entries of the last dim are packed into one int32 (one
    byte each, in memory order) whose bytes are then viewed as bool. The
    packing is a sum over a dim of 4 (which Inductor unrolls inside one
    vectorised loop over words). Returns ``mask`` unchanged (as bool) when
    the last dim is not a multiple of 4.
    """
    mask = mask if mask.dtype == torch.bool else mask != 0
    if mask.ndim == 0 or mask.shape[-1] % 4:
        return mask
    shifts = (0, 8, 16, 24) if sys.byteorder == "little" else (24, 16, 8, 0)
    weights = torch.tensor([1 << s for s in shifts], dtype=torch.int32, device=mask.device)
    word = (mask.unflatten(-1, (-1, 4)).to(torch.int32) * weights).sum(-1, dtype=torch.int32)
    # int32 -> bool directly: Inductor cannot vectorise a load through a uint8 -> bool bitcast.
    return word.view(torch.bool)
