"""Hypothesis strategies that build *valid* sparsekit_fx layouts.

Every strategy constructs its specs from the inside out (block sizes are
multiplied into view shapes, scope sizes into block grids, orders are drawn
as permutations and the coupled grids derived from them), so no example is
wasted on a spec the library would refuse. Sizes stay small: the plain-loop
references in ``tests/reference.py`` are slow.

A layout is ``(params, spec)``: a dict of tensors (plus an ``"untouched"``
entry no spec covers) and a BlockSpec, BlockCoupling, ScopeSpec or
ScopeCoupling. Views come in four kinds: the whole parameter, a reshape of its
elements, a permutation of a reshape, and a *gather* (a strided sub-box with
gaps, steps and an offset). Parameters have 1 to 4 dims whatever the view's
rank (a view indexes the parameter's row-major element order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from hypothesis import strategies as st

from sparsekit_fx import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View
from sparsekit_fx.geometry import contiguous_strides

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
HALF = (torch.float16, torch.bfloat16)
#: Largest host region of one gather view (elements).
MAX_PARAM = 400
#: Largest view (elements).
MAX_VIEW = 160
#: Most blocks in one scope-like grid.
MAX_GRID = 72


def divisors(n: int) -> List[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def inverse(order: Sequence[int]) -> Tuple[int, ...]:
    inv = [0] * len(order)
    for i, o in enumerate(order):
        inv[o] = i
    return tuple(inv)


def permuted(shape: Sequence[int], order: Sequence[int]) -> Tuple[int, ...]:
    return tuple(shape[o] for o in order)


@st.composite
def factorization(draw, n: int, min_dims: int = 1, max_dims: int = 4) -> Tuple[int, ...]:
    """A shape of 1..4 dims with ``prod == n`` (unit dims allowed)."""
    ndim = draw(st.integers(min_dims, max_dims))
    dims = [1] * ndim
    m, p = n, 2
    while m > 1:  # distribute prime factors at random
        while m % p:
            p += 1
        dims[draw(st.integers(0, ndim - 1))] *= p
        m //= p
    return tuple(dims)


@dataclass
class Region:
    """A view's geometry inside a flat host region of ``host`` elements."""

    shape: Tuple[int, ...]
    stride: Tuple[int, ...]
    offset: int
    host: int
    kind: str


@st.composite
def region(draw, vshape: Tuple[int, ...], kinds: Sequence[str] = ("whole", "reshape", "permute", "gather")) -> Region:
    """A valid strided window of shape ``vshape`` over a host of contiguous elements."""
    kind = draw(st.sampled_from(kinds))
    n = math.prod(vshape)
    nd = len(vshape)
    if kind in ("whole", "reshape"):
        return Region(vshape, contiguous_strides(vshape), 0, n, kind)
    perm = draw(st.permutations(range(nd)))  # host dim k holds view dim perm[k]
    if kind == "permute":
        host = permuted(vshape, perm)
        cs = contiguous_strides(host)
        stride = [0] * nd
        for k, j in enumerate(perm):
            stride[j] = cs[k]
        return Region(vshape, tuple(stride), 0, n, kind)
    # gather: a strided sub-box of a bigger host box, with steps and offsets
    steps, starts, sizes = [], [], []
    budget = MAX_PARAM // 2
    for j in perm:
        v = vshape[j]
        step = draw(st.integers(1, 3)) if v > 1 else 1
        start = draw(st.integers(0, 2))
        extra = draw(st.integers(0, 1))
        size = start + (v - 1) * step + 1 + extra
        steps.append(step)
        starts.append(start)
        sizes.append(size)
    while math.prod(sizes) > budget:  # too big: drop the gaps of the largest dim
        k = max(range(nd), key=lambda i: sizes[i])
        if steps[k] == 1 and starts[k] == 0 and sizes[k] == vshape[perm[k]]:
            break
        steps[k], starts[k] = 1, 0
        sizes[k] = vshape[perm[k]]
    cs = contiguous_strides(sizes)
    stride = [0] * nd
    for k, j in enumerate(perm):
        stride[j] = cs[k] * steps[k]
    offset = sum(s * c for s, c in zip(starts, cs))
    return Region(vshape, tuple(stride), offset, math.prod(sizes), kind)


@dataclass
class Builder:
    """Collects the views of each parameter while a layout is drawn."""

    regions: Dict[str, List[Region]]

    def add(self, name: str, reg: Region) -> int:
        """Place ``reg`` after the regions already in ``name``; return its base offset."""
        regs = self.regions.setdefault(name, [])
        base = sum(r.host for r in regs)
        regs.append(reg)
        return base


def _draw_name(draw, builder: Builder, share: bool) -> str:
    existing = sorted(builder.regions)
    if share and existing and draw(st.booleans()):
        return draw(st.sampled_from(existing))
    return f"p{len(builder.regions)}"


@st.composite
def block_spec(draw, grid: Tuple[int, ...], builder: Builder, pending: List, share: bool = True,
               kinds: Sequence[str] = ("whole", "reshape", "permute", "gather")) -> int:
    """Append to ``pending`` a recipe for a BlockSpec with grid ``grid``; return its index.

    Specs are finalised in :func:`finish` once every parameter's total size
    is known (views of one parameter are laid out one after the other).
    """
    block = []
    size = math.prod(grid)
    for _ in grid:  # block sizes 1..3, keeping the view at most MAX_VIEW elements
        b = draw(st.integers(1, 3)) if size * 3 <= MAX_VIEW else 1
        block.append(b)
        size *= b
    vshape = tuple(g * b for g, b in zip(grid, block))
    name = _draw_name(draw, builder, share)
    reg = draw(region(vshape, kinds if name not in builder.regions else ("reshape", "permute", "gather")))
    base = builder.add(name, reg)
    # express the block shape: -1 for whole dims (sometimes), () when all ones (sometimes)
    expr = tuple(-1 if (b == v and draw(st.booleans())) else b for b, v in zip(block, vshape))
    if all(b == 1 for b in block) and draw(st.booleans()):
        expr = ()
    pending.append((name, reg, base, expr))
    return len(pending) - 1


@st.composite
def block_like(draw, grid: Tuple[int, ...], builder: Builder, pending: List) -> Tuple[str, object]:
    """A recipe for a BlockSpec or a BlockCoupling whose (coupled) grid is ``grid``."""
    if draw(st.booleans()):
        return ("B", draw(block_spec(grid, builder, pending)))
    members = []
    for _ in range(draw(st.integers(1, 3))):
        order = tuple(draw(st.permutations(range(len(grid)))))
        own = permuted(grid, inverse(order))  # own[order[k]] == grid[k]
        members.append((draw(block_spec(own, builder, pending)), order))
    orders = tuple(o for _, o in members) if draw(st.booleans()) or any(
        o != tuple(range(len(grid))) for _, o in members) else None
    return ("BC", tuple(i for i, _ in members), orders)


def _scope_expr(draw, shape: Tuple[int, ...], grid: Tuple[int, ...]) -> Tuple[int, ...]:
    expr = [(-1 if (s == g and draw(st.booleans())) else s) for s, g in zip(shape, grid)]
    if draw(st.booleans()):  # missing trailing dims mean -1
        while expr and (expr[-1] == -1 or expr[-1] == grid[len(expr) - 1]):
            expr.pop()
    return tuple(expr)


@st.composite
def scope_like(draw, builder: Builder, pending: List, rank: Optional[int] = None) -> Tuple:
    """A recipe for a ScopeSpec or ScopeCoupling."""
    rank = draw(st.integers(1, 3)) if rank is None else rank
    if draw(st.integers(0, 2)) > 0:
        sgrid = tuple(draw(st.integers(1, 3)) for _ in range(rank))
        if rank == 1:  # long scopes too: more than SMALL_N (32) blocks takes the bisection path
            sshape = (draw(st.sampled_from([1, 2, 3, 4, 5, 8, 33, 40, 64])),)
        else:
            sshape = tuple(draw(st.integers(1, 4)) for _ in range(rank))
        while math.prod(sgrid) * math.prod(sshape) > MAX_GRID:
            sgrid = tuple(max(1, g // 2) for g in sgrid)
            if math.prod(sgrid) * math.prod(sshape) > MAX_GRID:
                sshape = tuple(max(1, x // 2) for x in sshape)
        grid = tuple(a * b for a, b in zip(sgrid, sshape))
        bl = draw(block_like(grid, builder, pending))
        return ("S", bl, _scope_expr(draw, sshape, grid))
    sgrid = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    members = []
    for _ in range(draw(st.integers(1, 3))):
        order = tuple(draw(st.permutations(range(rank))))
        own = permuted(sgrid, inverse(order))
        sshape = tuple(draw(st.integers(1, 3)) for _ in range(rank))
        grid = tuple(a * b for a, b in zip(own, sshape))
        bl = draw(block_like(grid, builder, pending))
        members.append((("S", bl, _scope_expr(draw, sshape, grid)), order))
    return ("SC", tuple(m for m, _ in members), tuple(o for _, o in members))


@st.composite
def finish(draw, builder: Builder, pending: List, recipe: Tuple) -> Tuple[Dict[str, Tuple[int, ...]], object]:
    """Turn recipes into specs; returns ``(param_shapes, spec)``."""
    shapes: Dict[str, Tuple[int, ...]] = {}
    for name, regs in builder.regions.items():
        numel = sum(r.host for r in regs) + draw(st.integers(0, 3))
        if len(regs) == 1 and regs[0].kind == "whole":
            numel = regs[0].host
        shapes[name] = draw(factorization(numel))

    def blockspec(i: int) -> BlockSpec:
        name, reg, base, expr = pending[i]
        if reg.kind == "whole" and len(builder.regions[name]) == 1:
            shapes[name] = reg.shape  # the parameter is the view itself
            return BlockSpec(View(name, reg.shape), expr)
        view = View(name, shapes[name], reg.shape, reg.stride, base + reg.offset)
        return BlockSpec(view, expr)

    def build(r: Tuple) -> object:
        if r[0] == "B":
            return blockspec(r[1])
        if r[0] == "BC":
            return BlockCoupling(tuple(blockspec(i) for i in r[1]), orders=r[2])
        if r[0] == "S":
            return ScopeSpec(build(r[1]), r[2])
        return ScopeCoupling(tuple(build(m) for m in r[1]), orders=r[2])

    return shapes, build(recipe)


# ---------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------


def make_tensor(shape: Tuple[int, ...], dtype: torch.dtype, seed: int, ties: bool, specials: bool,
                noncontiguous: bool = False) -> torch.Tensor:
    """Deterministic test data: small ints (plenty of ties) or normals; optional NaN/Inf/-0.0."""
    g = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    if ties:
        x = torch.randint(-3, 4, (n,), generator=g).to(torch.float64)
    else:
        x = torch.randn(n, generator=g, dtype=torch.float64)
    if specials and n:
        pick = torch.randint(0, 8, (n,), generator=g)
        x = torch.where(pick == 0, torch.tensor(math.nan, dtype=torch.float64), x)
        x = torch.where(pick == 1, torch.tensor(math.inf, dtype=torch.float64), x)
        x = torch.where(pick == 2, torch.tensor(-math.inf, dtype=torch.float64), x)
        x = torch.where(pick == 3, torch.tensor(-0.0, dtype=torch.float64), x)
    x = x.reshape(shape).to(dtype)
    if noncontiguous and len(shape) >= 2:
        x = x.transpose(0, 1).contiguous().transpose(0, 1)  # same values, other memory layout
    return x


@st.composite
def data(draw, shapes: Dict[str, Tuple[int, ...]], dtype: Optional[torch.dtype] = None,
         specials: Optional[bool] = None, mixed: bool = False) -> Dict[str, torch.Tensor]:
    """Tensors for ``shapes`` plus an ``"untouched"`` entry: one dtype, or one per tensor if ``mixed``."""
    dtype = draw(st.sampled_from(DTYPES)) if dtype is None else dtype
    ties = draw(st.booleans())
    specials = draw(st.integers(0, 4)) == 0 if specials is None else specials
    seed = draw(st.integers(0, 2**31 - 1))
    params = {
        name: make_tensor(shape, draw(st.sampled_from(DTYPES)) if mixed else dtype, seed + i, ties, specials,
                          noncontiguous=draw(st.booleans()))
        for i, (name, shape) in enumerate(sorted(shapes.items()))
    }
    params["untouched"] = make_tensor((3,), dtype, seed + 99, ties, specials)
    return params


@st.composite
def block_layouts(draw) -> Tuple[Dict[str, Tuple[int, ...]], object]:
    """``(param_shapes, BlockSpec or BlockCoupling)``."""
    builder, pending = Builder({}), []
    rank = draw(st.integers(1, 3))
    grid = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    recipe = draw(block_like(grid, builder, pending))
    return draw(finish(builder, pending, recipe))


@st.composite
def scope_layouts(draw) -> Tuple[Dict[str, Tuple[int, ...]], object]:
    """``(param_shapes, ScopeSpec or ScopeCoupling)``."""
    builder, pending = Builder({}), []
    recipe = draw(scope_like(builder, pending))
    return draw(finish(builder, pending, recipe))


@st.composite
def layouts(draw, kind: str = "scope", dtype: Optional[torch.dtype] = None,
            specials: Optional[bool] = None) -> Tuple[Dict[str, torch.Tensor], object]:
    """``(params, spec)`` with data; ``kind`` is ``"scope"`` or ``"block"``."""
    shapes, spec = draw(scope_layouts() if kind == "scope" else block_layouts())
    return draw(data(shapes, dtype, specials)), spec


# ---------------------------------------------------------------------------
# helpers shared by the property tests
# ---------------------------------------------------------------------------

_INT_VIEW = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
             torch.float64: torch.int64}


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bits (NaN payloads and the sign of zero included)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype in _INT_VIEW:
        return torch.equal(a.contiguous().view(_INT_VIEW[a.dtype]), b.contiguous().view(_INT_VIEW[b.dtype]))
    return torch.equal(a, b)


def snapshot(params: Dict[str, torch.Tensor]) -> Dict[str, Tuple[torch.Tensor, Tuple[int, ...], int]]:
    """Clones, strides and storage offsets, to prove later that nothing was modified."""
    return {k: (v.detach().clone(), v.stride(), v.data_ptr()) for k, v in params.items()}


def assert_unchanged(params: Dict[str, torch.Tensor], snap) -> None:
    assert params.keys() == snap.keys()
    for k, v in params.items():
        clone, stride, ptr = snap[k]
        assert v.stride() == stride and v.data_ptr() == ptr, k
        assert bitwise_equal(v.detach(), clone), f"input {k!r} was modified"
