"""Block statistics: norms, min, max and custom reductions, per (coupled) block.

Public functions take ``params`` (and optional ``values``) mappings and a
spec. The ``*_of`` helpers take the view tensors directly (one per
``spec.views()``, in order, possibly with leading batch dims) and are what
the ops and the batched tree engine build on.

A coupled block is the union of the corresponding blocks of every coupled
spec, so its p-norm is the root of the sum of the per-spec power sums
(``sum |x|**p``), its min the min of the mins, and so on; no concatenated copy
is made except for :func:`block_reduce`, whose function needs the elements
themselves. Half-precision inputs accumulate norms in float32 (float64 stays
float64).

Norms are *deterministic*: power sums are added in a fixed pairwise order with
elementwise operations (never a reduction kernel, whose order depends on the
backend and the thread count), and float32 square roots are taken in float64
and rounded (correctly rounded, unlike some vectorised float32 ``sqrt``
kernels). So eager and compiled code, and any thread count, give bitwise
identical norms, and masks ranked on them are identical too. The exceptions
are float64 inputs with ``p=2`` (the float64 ``sqrt`` itself may differ in
the last bit between eager and compiled code) and orders ``p`` other than
``0, 1, 2, inf, -inf`` (``pow`` may differ likewise).

Partial edge blocks (``BlockSpec(..., pad=True)``) are padded with the
neutral element of each statistic, so only real elements count: ``0`` for
norms (``+inf`` for ``p=-inf``), ``+inf`` for min, ``-inf`` for max; a mean
divides by the number of real elements (as ``F.avg_pool2d(ceil_mode=True)``
does for its edge windows).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, List, Optional, Sequence

import torch
from torch import Tensor

from .errors import ArgumentError, SpecError, describe
from .inputs import acc_dtype, view_sources
from .layout import interleave, odd_dims, permute_grid, read_view, to_blocks, to_scopes
from .specs import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec

__all__ = [
    "block_norms",
    "block_min",
    "block_max",
    "block_reduce",
    "block_mean",
    "scope_scores",
    "check_p",
    "norms_of",
    "minmax_of",
    "means_of",
    "blocks_of",
    "scores_of",
    "read_views",
    "tree_sum",
]


def check_p(p: Any, where: str) -> float:
    """Pure: validate a norm order: ``0``, ``inf``, ``-inf`` or a positive number."""
    ok = isinstance(p, numbers.Real) and not isinstance(p, bool)
    if ok:
        p = float(p)
        ok = p == 0 or p > 0 or p == -math.inf
    if not ok:
        raise ArgumentError(
            describe(where, "p", "0, a positive number, math.inf or -math.inf", repr(p),
                     "use p=2 for the Euclidean norm, p=1 for L1, p=math.inf for max-abs.")
        )
    return p


def _block_of(spec: Any, where: str) -> Any:
    if isinstance(spec, ScopeSpec):
        return spec.block
    if isinstance(spec, (BlockSpec, BlockCoupling)):
        return spec
    raise SpecError(
        describe(where, "spec", "a BlockSpec, BlockCoupling or ScopeSpec", type(spec).__name__,
                 "pass the block layout (for a ScopeCoupling use scope_scores).")
    )


def read_views(params: Any, spec: Any, where: str, values: Optional[Any] = None) -> List[Tensor]:
    """Pure: the view-shaped tensors of ``spec.views()``, validated, from values or params."""
    views = spec.views()
    sources = view_sources(params, views, where, values=values)
    return [read_view(t, v) for t, v in zip(sources, views)]


# ---------------------------------------------------------------------------
# tensor-level helpers (view tensors in, grid tensors out)
# ---------------------------------------------------------------------------


def _reduce_spec(x: Tensor, spec: BlockSpec, how: Callable[[Tensor, Any], Tensor], fill: float = 0.0) -> Tensor:
    """Reduce each block of view-shaped ``x`` (leading batch dims allowed).

    Padding of partial edge blocks is filled with ``fill``, which must be the
    neutral element of the reduction.
    """
    if spec.ndim == 0:
        return how(x.unsqueeze(-1), (-1,))
    return how(interleave(x, spec.shape, spec.padding, fill), odd_dims(spec.ndim))


def tree_sum(t: Tensor, dim: int) -> Tensor:
    """Pure: sum over ``dim`` (kept, size 1) in a fixed pairwise order.

    Only elementwise additions of slices are used, so the rounding is the same
    in eager and compiled code and for any thread count (a reduction kernel
    may add in any order). Pairwise summation also has a smaller error bound
    than sequential summation.
    """
    n = t.shape[dim]
    rest: List[Tensor] = []
    while n > 1:
        h = n // 2
        if n % 2:
            rest.append(t.narrow(dim, 2 * h, 1))
        t = t.narrow(dim, 0, h) + t.narrow(dim, h, h)
        n = h
    for r in reversed(rest):
        t = t + r
    return t


def _is_sum(p: float) -> bool:
    """Whether order ``p`` is a power sum (``sum |x|**p``) rather than max/min/count."""
    return p not in (0, math.inf, -math.inf)


def _spec_power(x: Tensor, spec: BlockSpec, p: float) -> Tensor:
    """Per-block ``sum |x|**p`` (or max/min of ``|x|``, or the non-zero count) in the accumulation dtype."""
    dt = acc_dtype(x.dtype)
    if not _is_sum(p):
        fill = math.inf if p == -math.inf else 0.0  # the neutral element for padding
        return _reduce_spec(x, spec, lambda t, dims: torch.linalg.vector_norm(t, ord=p, dim=dims, dtype=dt), fill)
    x = x.to(dt)
    if p == 2:
        t = x * x
    elif p == 1:
        t = x.abs()
    else:
        a = x.abs()  # guard pow's infinite derivative at 0 (p < 1) so gradients stay finite
        nz = a != 0
        t = torch.where(nz, torch.where(nz, a, torch.ones_like(a)).pow(p), torch.zeros_like(a))
    if spec.ndim == 0:
        return t
    t = interleave(t, spec.shape, spec.padding, 0.0)  # padding adds 0 to the sums
    for d in odd_dims(spec.ndim):
        if t.shape[d] > 1:
            t = tree_sum(t, d)
    return t.reshape(tuple(x.shape[: x.ndim - spec.ndim]) + tuple(spec.grid_shape))


def _root(s: Tensor, p: float) -> Tensor:
    """The p-th root of a power sum (identity for max/min/count orders).

    The gradient at a zero sum is 0 (the subgradient ``torch.linalg.vector_norm``
    uses), not the NaN of ``0 * inf``; NaN and inf sums stay NaN and inf.
    """
    if not _is_sum(p) or p == 1:
        return s
    nz = s != 0
    safe = torch.where(nz, s, torch.ones_like(s))
    if p == 2 and s.dtype == torch.float32:  # correctly rounded, identical in eager and compiled code
        r = safe.to(torch.float64).sqrt().to(torch.float32)
    elif p == 2:
        r = safe.sqrt()
    else:
        r = safe.pow(1.0 / p)
    return torch.where(nz, r, torch.zeros_like(r))


def norms_of(block: Any, xs: Sequence[Tensor], p: float = 2.0) -> Tensor:
    """Pure: per-block p-norms from view tensors; shape ``(*lead, *block.grid_shape)``.

    Deterministic (see the module docstring). A block of one element has norm
    ``|x|`` exactly for every ``p > 0``.
    """
    specs = block.specs if isinstance(block, BlockCoupling) else (block,)
    orders = block.orders if isinstance(block, BlockCoupling) else (tuple(range(block.ndim)),)
    if _is_sum(p) and len(specs) == 1 and specs[0].numel_per_block() == 1:
        x, s = xs[0], specs[0]
        return permute_grid(x.to(acc_dtype(x.dtype)).abs().reshape(tuple(x.shape[: x.ndim - s.ndim]) + s.grid_shape),
                            orders[0])
    parts = [permute_grid(_spec_power(x, s, p), o) for x, s, o in zip(xs, specs, orders)]
    total = parts[0]
    for part in parts[1:]:  # coupled specs, in spec order
        if p == math.inf:
            total = torch.maximum(total, part)
        elif p == -math.inf:
            total = torch.minimum(total, part)
        else:
            total = total + part
    return _root(total, p)


def minmax_of(block: Any, xs: Sequence[Tensor], largest: bool) -> Tensor:
    """Pure: per-block min (or max) of the values from view tensors."""
    red = torch.amax if largest else torch.amin
    fill = -math.inf if largest else math.inf

    def one(x: Tensor, s: BlockSpec) -> Tensor:
        return _reduce_spec(x, s, lambda t, dims: red(t, dim=dims), fill)

    if isinstance(block, BlockSpec):
        return one(xs[0], block)
    parts = [permute_grid(one(x, s), o) for x, s, o in zip(xs, block.specs, block.orders)]
    if len(parts) == 1:
        return parts[0]
    return red(torch.stack(parts, dim=-1), dim=-1)


#: Blocks up to this many elements are summed one element after another.
SEQUENTIAL_SUM_MAX = 256


def _sequential_sum(b: Tensor) -> Tensor:
    """Pure: sum over the last dim, adding entries one after another in index order.

    The fixed left-to-right order makes means reproducible bit for bit (it is
    the order of PyTorch's CPU pooling kernels); rows longer than
    :data:`SEQUENTIAL_SUM_MAX` fall back to ``torch.sum``.
    """
    n = b.shape[-1]
    if n > SEQUENTIAL_SUM_MAX:
        return b.sum(-1)
    acc = b[..., 0]
    for j in range(1, n):
        acc = acc + b[..., j]
    return acc


def _counts(spec: BlockSpec, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Pure: real elements per block, grid-shaped, from static spec facts."""
    out = torch.ones((), dtype=dtype, device=device)
    for d, c in enumerate(spec.block_counts()):
        shape = [1] * spec.ndim
        shape[d] = len(c)
        out = out * torch.tensor(c, dtype=dtype, device=device).reshape(shape)
    return out.expand(spec.grid_shape)


def means_of(block: Any, xs: Sequence[Tensor]) -> Tensor:
    """Pure: per-block mean of the real elements from view tensors.

    Sums run in each block's row-major order (coupled specs one after another)
    in the accumulation dtype, then divide by the number of real elements.
    """
    specs = block.specs if isinstance(block, BlockCoupling) else (block,)
    orders = block.orders if isinstance(block, BlockCoupling) else (tuple(range(block.ndim)),)
    total = None
    count = None
    for x, s, o in zip(xs, specs, orders):
        dt = acc_dtype(x.dtype)
        part = _sequential_sum(to_blocks(x.to(dt), s.shape, s.padding, 0.0))
        n = _counts(s, dt, x.device)
        part, n = permute_grid(part, o), permute_grid(n, o)
        total = part if total is None else total + part
        count = n if count is None else count + n
    return total / count


def blocks_of(block: Any, xs: Sequence[Tensor], fill: float = math.nan) -> Tensor:
    """Pure: the elements of every (coupled) block, ``(*grid_shape, numel_per_block)``.

    For a coupling the specs' elements are concatenated in spec order. The
    padding of partial edge blocks holds ``fill``.
    """
    if isinstance(block, BlockSpec):
        return to_blocks(xs[0], block.shape, block.padding, fill)
    parts = [
        permute_grid(to_blocks(x, s.shape, s.padding, fill), o, trailing=1)
        for x, s, o in zip(xs, block.specs, block.orders)
    ]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def scores_of(scope: Any, xs: Sequence[Tensor], p: float = 2.0) -> Tensor:
    """Pure: block norms in scope layout, ``(*lead, *scope.grid_shape, numblk_per_scope)``.

    For a ScopeCoupling the blocks of each coupled ScopeSpec follow one another
    in the order the scopes are listed.
    """
    if isinstance(scope, ScopeSpec):
        return to_scopes(norms_of(scope.block, xs, p), scope.shape)
    parts = []
    i = 0
    for s, o in zip(scope.scopes, scope.orders):
        k = len(s.views())
        parts.append(permute_grid(scores_of(s, xs[i : i + k], p), o, trailing=1))
        i += k
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


def block_norms(params: Any, block: Any, *, p: float = 2, values: Optional[Any] = None) -> Tensor:
    """Pure: the p-norm of every (coupled) block.

    Args:
        params: Mapping of parameter name to tensor.
        block: A BlockSpec, BlockCoupling, or ScopeSpec (its blocks are used).
        p: Norm order: a positive number, ``0`` (count of non-zeros),
            ``math.inf`` or ``-math.inf``.
        values: Optional mapping keyed like ``params`` whose tensors are
            scored instead of the parameters (e.g. gradients or saliencies).

    Returns:
        A tensor of shape ``block.grid_shape``; float32 for half inputs.

    Raises:
        SparseKitError: A parameter is missing or mis-shaped, or ``p`` is invalid.
    """
    where = "block_norms"
    block = _block_of(block, where)
    p = check_p(p, where)
    return norms_of(block, read_views(params, block, where, values), p)


def block_min(params: Any, block: Any, *, values: Optional[Any] = None) -> Tensor:
    """Pure: the smallest element of every (coupled) block, shape ``grid_shape``.

    Args and errors as in :func:`block_norms` (without ``p``).
    """
    where = "block_min"
    block = _block_of(block, where)
    return minmax_of(block, read_views(params, block, where, values), largest=False)


def block_max(params: Any, block: Any, *, values: Optional[Any] = None) -> Tensor:
    """Pure: the largest element of every (coupled) block, shape ``grid_shape``.

    Args and errors as in :func:`block_norms` (without ``p``).
    """
    where = "block_max"
    block = _block_of(block, where)
    return minmax_of(block, read_views(params, block, where, values), largest=True)


def block_mean(params: Any, block: Any, *, values: Optional[Any] = None) -> Tensor:
    """Pure: the mean of the real elements of every (coupled) block, shape ``grid_shape``.

    Partial edge blocks of a padded spec are divided by their number of real
    elements, like ``F.avg_pool2d(..., ceil_mode=True)``; elements are summed
    in the block's row-major order, one after another (blocks of more than
    :data:`SEQUENTIAL_SUM_MAX` elements use ``torch.sum``). Half inputs give
    float32 means. Score magnitudes with ``values``, e.g.
    ``values={name: w.abs()}``.

    Args and errors as in :func:`block_norms` (without ``p``).
    """
    where = "block_mean"
    block = _block_of(block, where)
    return means_of(block, read_views(params, block, where, values))


def block_reduce(
    params: Any, block: Any, fn: Callable[[Tensor], Tensor], *, values: Optional[Any] = None,
    pad_value: float = math.nan,
) -> Tensor:
    """Pure: apply a custom reduction to the elements of every (coupled) block.

    Args:
        params: Mapping of parameter name to tensor.
        block: A BlockSpec, BlockCoupling, or ScopeSpec.
        fn: Called once with a tensor of shape ``(*grid_shape, numel_per_block)``
            (coupled specs' elements concatenated in spec order); must reduce
            the last dim and return ``grid_shape``, e.g. ``lambda b: b.abs().sum(-1)``.
        values: Optional mapping keyed like ``params`` to reduce instead.
        pad_value: Fills the missing elements of partial edge blocks (padded
            specs only). The default NaN lets NaN-aware reductions such as
            ``torch.nansum`` ignore them; pass the neutral element of ``fn``
            otherwise (e.g. ``0.0`` for a sum).

    Returns:
        ``fn``'s result, checked to have shape ``grid_shape``.
    """
    where = "block_reduce"
    block = _block_of(block, where)
    if isinstance(pad_value, bool) or not isinstance(pad_value, numbers.Real):
        raise ArgumentError(
            describe(where, "pad_value", "a real number (NaN, inf allowed)", repr(pad_value),
                     "pass e.g. pad_value=0.0 for sums, or leave NaN and reduce with torch.nansum.")
        )
    out = fn(blocks_of(block, read_views(params, block, where, values), float(pad_value)))
    if not isinstance(out, Tensor) or tuple(out.shape) != tuple(block.grid_shape):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ArgumentError(
            describe(where, "fn", f"a function returning shape {block.grid_shape}", got,
                     "reduce the last dim only, e.g. lambda b: b.abs().amax(-1).")
        )
    return out


def scope_scores(params: Any, scope: Any, *, p: float = 2, values: Optional[Any] = None) -> Tensor:
    """Pure: block p-norms arranged by scope.

    Args:
        params: Mapping of parameter name to tensor.
        scope: A ScopeSpec or ScopeCoupling.
        p: Norm order, as in :func:`block_norms`.
        values: Optional mapping keyed like ``params`` to score instead.

    Returns:
        ``(*scope.grid_shape, scope.numblk_per_scope())``: entry ``[..., j]`` is
        the score of the j-th block of the scope in its flattened order.
    """
    where = "scope_scores"
    if not isinstance(scope, (ScopeSpec, ScopeCoupling)):
        raise SpecError(
            describe(where, "scope", "a ScopeSpec or ScopeCoupling", type(scope).__name__,
                     "wrap blocks in a scope: ScopeSpec(block, shape).")
        )
    p = check_p(p, where)
    return scores_of(scope, read_views(params, scope, where, values), p)
