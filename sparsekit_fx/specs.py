"""Specs: immutable, hashable descriptions of a sparsity layout.

The five spec types form a small algebra, each built from the one before:

* :class:`View` names a parameter and a strided window of it.
* :class:`BlockSpec` cuts a view into equal blocks, the unit that is kept or
  zeroed together. Its ``grid_shape`` counts blocks per dimension.
* :class:`BlockCoupling` glues the blocks of several BlockSpecs into one
  coupled block per grid cell, aligning their grids with ``orders``.
* :class:`ScopeSpec` groups neighbouring blocks (of a BlockSpec or coupling)
  into scopes; the blocks of one scope compete for a budget of survivors.
* :class:`ScopeCoupling` merges the scopes of several ScopeSpecs so that one
  budget is shared across parameters.

Specs hold layout only: strings and ints, never tensors. They are frozen
dataclasses, compare equal by layout (``name`` is a label and is ignored by
``==`` and ``hash``), and are registered as pytree nodes with no leaves, so
``torch.compile`` treats them as constants and ``vmap`` needs no ``in_dims``
for them. Every check happens at construction and raises a
:class:`~sparsekit_fx.errors.SparseKitError` subclass.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .errors import CouplingError, ShapeMismatchError, SpecError, describe
from .geometry import Geometry, contiguous_strides, intervals_overlap
from .geometry import geometry as _geometry

__all__ = [
    "View",
    "BlockSpec",
    "BlockCoupling",
    "ScopeSpec",
    "ScopeCoupling",
    "Spec",
    "BlockLike",
    "ScopeLike",
    "is_spec",
]

Shape = Tuple[int, ...]


# ---------------------------------------------------------------------------
# small validation helpers (ints only)
# ---------------------------------------------------------------------------


def _ints(value: Any, where: str, arg: str, *, allow: str = "positive") -> Shape:
    """Normalise a shape-like argument to a tuple of Python ints."""
    if value is None:
        raise SpecError(describe(where, arg, "a tuple of ints", None, f"pass {arg}=(...)."))
    try:
        items = tuple(operator.index(v) for v in value)
    except TypeError:
        raise SpecError(
            describe(where, arg, "a tuple of ints", repr(value), f"pass {arg} as a tuple of Python ints.")
        ) from None
    bad = [
        v
        for v in items
        if (allow == "positive" and v < 1)
        or (allow == "nonneg" and v < 0)
        or (allow == "block" and not (v >= 1 or v == -1))
    ]
    if bad:
        what = {
            "positive": "sizes >= 1",
            "nonneg": "values >= 0",
            "block": "sizes >= 1, or -1 for a whole dimension",
        }[allow]
        raise SpecError(describe(where, arg, what, items, f"replace {bad} in {arg}."))
    return items


def _label(kind: str, name: Optional[str], extra: str = "") -> str:
    parts = []
    if name is not None:
        parts.append(f"name={name!r}")
    if extra:
        parts.append(extra)
    return f"{kind}({', '.join(parts)})"


def _normalize_orders(orders: Any, ranks: Sequence[int], where: str) -> Tuple[Shape, ...]:
    """Normalise coupling ``orders``: ``None``/``()`` means identity for all."""
    if orders is None or (isinstance(orders, (tuple, list)) and len(orders) == 0):
        return tuple(tuple(range(r)) for r in ranks)
    orders = tuple(orders)
    if len(orders) != len(ranks):
        raise CouplingError(
            describe(
                where,
                "orders",
                f"one permutation per coupled spec ({len(ranks)})",
                f"{len(orders)} orders",
                "give exactly one order per spec, or omit orders for identity alignment.",
            )
        )
    out = []
    for i, (o, r) in enumerate(zip(orders, ranks)):
        if o is None or (isinstance(o, (tuple, list)) and len(o) == 0):
            out.append(tuple(range(r)))
            continue
        try:
            o = tuple(operator.index(v) for v in o)
        except TypeError:
            raise CouplingError(
                describe(where, f"orders[{i}]", f"a permutation of range({r})", repr(o), "pass a tuple of ints.")
            ) from None
        if sorted(o) != list(range(r)):
            raise CouplingError(
                describe(
                    where,
                    f"orders[{i}]",
                    f"a permutation of range({r}) (the spec's grid has {r} dims)",
                    o,
                    f"list each of the dims 0..{r - 1} exactly once.",
                )
            )
        out.append(o)
    return tuple(out)


def _permute(shape: Shape, order: Shape) -> Shape:
    return tuple(shape[i] for i in order)


# ---------------------------------------------------------------------------
# View
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """A strided view of a named parameter, in its row-major element order.

    Element ``i`` of the view is element ``offset + sum(i[d] * stride[d])`` of
    ``param.reshape(-1)``, whatever the parameter's memory layout, so a view
    means the same thing for contiguous and non-contiguous tensors.

    Args:
        param: Name of the parameter, as in ``dict(model.named_parameters())``.
        param_shape: Shape of the parameter.
        shape: Shape of the view; defaults to ``param_shape``.
        stride: Strides in elements; defaults to the row-major strides of
            ``shape`` (a plain reshape of the parameter's elements).
        offset: First element of the view in the flat parameter.

    Raises:
        SpecError: A size is not a positive int, ``stride`` has the wrong rank,
            the view leaves the parameter, or it overlaps itself.

    Example:
        Pair columns 8 apart for a coupled 2:4 pattern::

            View("w", param_shape=(M, K), shape=(M, K // 16, 8, 2), stride=(K, 16, 1, 8))
    """

    param: str
    param_shape: Shape
    shape: Optional[Shape] = None
    stride: Optional[Shape] = None
    offset: int = 0
    geometry: Geometry = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"View(param={self.param!r})"
        if not isinstance(self.param, str) or not self.param:
            raise SpecError(
                describe("View", "param", "a non-empty parameter name (str)", repr(self.param),
                         "pass the name used in dict(model.named_parameters()).")
            )
        param_shape = _ints(self.param_shape, where, "param_shape")
        shape = param_shape if self.shape is None else _ints(self.shape, where, "shape")
        if self.stride is None:
            stride = contiguous_strides(shape)
        else:
            stride = _ints(self.stride, where, "stride", allow="nonneg")
        if len(stride) != len(shape):
            raise SpecError(
                describe(where, "stride", f"{len(shape)} strides (one per dim of shape {shape})",
                         stride, "give one stride per view dimension.")
            )
        try:
            offset = operator.index(self.offset)
        except TypeError:
            raise SpecError(describe(where, "offset", "an int >= 0", repr(self.offset), "pass an int.")) from None
        if offset < 0:
            raise SpecError(describe(where, "offset", "an int >= 0", offset, "use a non-negative offset."))
        geo = _geometry(shape, stride)
        if not geo.nests:
            raise SpecError(
                describe(
                    where,
                    "stride",
                    "a non-overlapping view whose dims nest by stride",
                    f"shape={shape}, stride={stride}: {geo.problem}",
                    "make each stride at least the span of the smaller-stride dims (or split the view in two).",
                )
            )
        numel = math.prod(param_shape)
        if offset + geo.extent > numel:
            raise SpecError(
                describe(
                    where,
                    "shape/stride/offset",
                    f"a view inside the parameter's {numel} elements",
                    f"elements {offset}..{offset + geo.extent - 1}",
                    "shrink the view or its offset so the last element is < numel(param_shape).",
                )
            )
        object.__setattr__(self, "param_shape", param_shape)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "stride", stride)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "geometry", geo)

    @classmethod
    def of(cls, param: str, tensor: Any) -> "View":
        """Pure: the whole-parameter view of ``tensor`` under the name ``param``."""
        return cls(param, tuple(tensor.shape))

    @property
    def ndim(self) -> int:
        """Number of view dimensions."""
        return len(self.shape)

    def numel(self) -> int:
        """Number of elements in the view."""
        return math.prod(self.shape)

    def param_numel(self) -> int:
        """Number of elements in the parameter."""
        return math.prod(self.param_shape)

    @property
    def is_whole(self) -> bool:
        """The view is the parameter itself, in its own shape."""
        return (
            self.offset == 0
            and self.shape == self.param_shape
            and self.stride == contiguous_strides(self.param_shape)
        )

    @property
    def span(self) -> Tuple[int, int]:
        """Half-open flat interval ``[first, last + 1)`` touched by the view."""
        return (self.offset, self.offset + self.geometry.extent)

    def params(self) -> Tuple[str, ...]:
        """Names of the parameters this spec touches."""
        return (self.param,)

    def views(self) -> Tuple["View", ...]:
        """The views of this spec, in canonical order."""
        return (self,)


# ---------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockSpec:
    """Cuts a view into a grid of equal blocks, optionally with partial edge blocks.

    Without padding the block shape must divide the view. With ``pad=True``
    the grid is ``ceil(view.shape / shape)`` per dim: the view is treated as
    if padded at the high end of each dim up to ``padded_shape``, and the
    last block along a dim holds only the real elements that remain. Padding
    is never read from or written to a parameter: statistics ignore it
    (norms, min, max and means see only real elements) and masks and
    thresholded params are cropped back to the view.

    Args:
        view: The :class:`View` to cut.
        shape: Block shape, one entry per view dim. ``-1`` spans the whole
            dim; ``()`` means blocks of single elements.
        name: Optional label, used in messages; not part of equality.
        pad: Allow block sizes that do not divide the view (partial edge
            blocks). Normalised to ``False`` when the blocks divide the view,
            so equal layouts compare equal.

    Attributes:
        grid_shape: Blocks per dim (``ceil`` with padding).
        padding: Padding elements at the high end of each view dim
            (all zero without padding).

    Raises:
        ShapeMismatchError: ``shape`` has the wrong rank or, without
            ``pad=True``, does not divide the view.
        SpecError: ``view`` is not a View, a size is invalid or ``pad`` is
            not a bool.
    """

    view: View
    shape: Shape = ()
    name: Optional[str] = field(default=None, compare=False)
    pad: bool = False
    grid_shape: Shape = field(init=False, repr=False, compare=False)
    padding: Shape = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = _label("BlockSpec", self.name, f"view of {getattr(self.view, 'param', '?')!r}")
        if not isinstance(self.view, View):
            raise SpecError(
                describe(where, "view", "a View", type(self.view).__name__,
                         "wrap the parameter first: View(name, param_shape) or View.of(name, tensor).")
            )
        vshape = self.view.shape
        shape = _ints(self.shape, where, "shape", allow="block")
        if len(shape) == 0:
            shape = (1,) * len(vshape)
        if len(shape) != len(vshape):
            raise ShapeMismatchError(
                describe(where, "shape", f"{len(vshape)} block dims (view shape {vshape})", shape,
                         "give one block size per view dim, -1 for a whole dim.")
            )
        shape = tuple(v if b == -1 else b for b, v in zip(shape, vshape))
        if not isinstance(self.pad, bool):
            raise SpecError(
                describe(where, "pad", "a bool", repr(self.pad),
                         "pass pad=True to allow partial edge blocks, or leave the default pad=False.")
            )
        bad = [d for d, (b, v) in enumerate(zip(shape, vshape)) if v % b != 0]
        if bad and not self.pad:
            d = bad[0]
            raise ShapeMismatchError(
                describe(where, "shape", f"block sizes dividing the view shape {vshape}", shape,
                         f"dim {d}: {vshape[d]} is not a multiple of {shape[d]}; pick a divisor, change the "
                         "view, or pass pad=True for partial edge blocks.")
            )
        grid = tuple(-(-v // b) for v, b in zip(vshape, shape))
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "pad", bool(bad))
        object.__setattr__(self, "grid_shape", grid)
        object.__setattr__(self, "padding", tuple(g * b - v for g, b, v in zip(grid, shape, vshape)))

    @property
    def ndim(self) -> int:
        """Number of grid (and block) dimensions."""
        return len(self.shape)

    def numblk(self) -> int:
        """Number of blocks in the grid."""
        return math.prod(self.grid_shape)

    def numel_per_block(self) -> int:
        """Number of elements per full block (edge blocks of a padded spec hold fewer)."""
        return math.prod(self.shape)

    def numel(self) -> int:
        """Number of real elements covered by all blocks (the view's elements)."""
        return self.view.numel()

    @property
    def padded_shape(self) -> Shape:
        """The view's shape rounded up to whole blocks (``view.shape`` without padding)."""
        return tuple(g * b for g, b in zip(self.grid_shape, self.shape))

    def block_counts(self) -> Tuple[Shape, ...]:
        """Real elements per block along each dim: one tuple of ``grid_shape[d]`` ints per dim.

        The number of real elements in block ``i`` is the product over dims
        of ``block_counts()[d][i[d]]``; only the last block along a padded
        dim is short.
        """
        return tuple(
            tuple(b - (p if i == g - 1 else 0) for i in range(g))
            for g, b, p in zip(self.grid_shape, self.shape, self.padding)
        )

    def specs(self) -> Tuple["BlockSpec", ...]:
        """The BlockSpecs of this block layout (itself)."""
        return (self,)

    def views(self) -> Tuple[View, ...]:
        """The views of this spec, in canonical order."""
        return (self.view,)

    def params(self) -> Tuple[str, ...]:
        """Names of the parameters this spec touches."""
        return (self.view.param,)


@dataclass(frozen=True)
class BlockCoupling:
    """Couples BlockSpecs so that corresponding blocks are kept or zeroed together.

    The grid of spec ``i`` is permuted by ``orders[i]`` (coupled grid dim ``k``
    is dim ``orders[i][k]`` of the spec's grid); all permuted grids must be
    equal. A coupled block is the union of the corresponding block of every
    spec, so its norm is taken over all their elements together.

    Args:
        specs: The BlockSpecs to couple (at least one).
        orders: One permutation per spec; ``None`` means identity for all.
        name: Optional label, not part of equality.

    Raises:
        CouplingError: Orders are not permutations, grids disagree after
            ordering, or two views of one parameter overlap.
    """

    specs: Tuple[BlockSpec, ...]
    orders: Optional[Tuple[Shape, ...]] = None
    name: Optional[str] = field(default=None, compare=False)
    grid_shape: Shape = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = _label("BlockCoupling", self.name)
        specs = tuple(self.specs) if isinstance(self.specs, (tuple, list)) else None
        if not specs:
            raise CouplingError(
                describe(where, "specs", "a non-empty tuple of BlockSpec", repr(self.specs),
                         "pass the BlockSpecs to couple, e.g. BlockCoupling((b1, b2)).")
            )
        for i, s in enumerate(specs):
            if not isinstance(s, BlockSpec):
                raise CouplingError(
                    describe(where, f"specs[{i}]", "a BlockSpec", type(s).__name__,
                             "couple BlockSpecs directly; to merge couplings, list all their specs in one BlockCoupling.")
                )
        _check_disjoint(_all_views(specs), where)
        orders = _normalize_orders(self.orders, [len(s.grid_shape) for s in specs], where)
        ref = _permute(specs[0].grid_shape, orders[0])
        for i, (s, o) in enumerate(zip(specs, orders)):
            got = _permute(s.grid_shape, o)
            if got != ref:
                raise CouplingError(
                    describe(
                        where,
                        f"orders[{i}]",
                        f"spec {i}'s grid {s.grid_shape} permuted to {ref} (the grid of spec 0 after its order)",
                        got,
                        "fix the order, or change the block shapes so the grids line up.",
                    )
                )
        object.__setattr__(self, "specs", specs)
        object.__setattr__(self, "orders", orders)
        object.__setattr__(self, "grid_shape", ref)

    @property
    def ndim(self) -> int:
        """Number of coupled grid dimensions."""
        return len(self.grid_shape)

    def numblk(self) -> int:
        """Number of coupled blocks."""
        return math.prod(self.grid_shape)

    def numel_per_block(self) -> int:
        """Elements per full coupled block, summed over the coupled specs."""
        return sum(s.numel_per_block() for s in self.specs)

    def numel(self) -> int:
        """Number of real elements covered by all coupled blocks."""
        return sum(s.numel() for s in self.specs)

    def views(self) -> Tuple[View, ...]:
        """The views of this spec, in canonical order."""
        return tuple(s.view for s in self.specs)

    def params(self) -> Tuple[str, ...]:
        """Names of the parameters this spec touches (first-seen order)."""
        return _unique(v.param for v in self.views())


BlockLike = Union[BlockSpec, BlockCoupling]


# ---------------------------------------------------------------------------
# Scopes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScopeSpec:
    """Groups blocks into scopes; the blocks of a scope compete for survival.

    Args:
        block: A :class:`BlockSpec` or :class:`BlockCoupling`.
        shape: Blocks per scope in each grid dim. ``-1`` spans the whole dim;
            missing trailing dims mean ``-1``; ``()`` makes one scope of all
            blocks.
        name: Optional label, not part of equality.

    Raises:
        ShapeMismatchError: ``shape`` has too many dims or does not divide
            the block grid.
        SpecError: ``block`` is not a block spec.
    """

    block: BlockLike
    shape: Shape = ()
    name: Optional[str] = field(default=None, compare=False)
    grid_shape: Shape = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = _label("ScopeSpec", self.name)
        if not isinstance(self.block, (BlockSpec, BlockCoupling)):
            raise SpecError(
                describe(where, "block", "a BlockSpec or BlockCoupling", type(self.block).__name__,
                         "build the blocks first: ScopeSpec(BlockSpec(view, shape), scope_shape).")
            )
        grid = self.block.grid_shape
        shape = _ints(self.shape, where, "shape", allow="block")
        if len(shape) > len(grid):
            raise ShapeMismatchError(
                describe(where, "shape", f"at most {len(grid)} dims (the block grid {grid})", shape,
                         "give one scope size per block-grid dim; missing trailing dims mean -1.")
            )
        shape = shape + (-1,) * (len(grid) - len(shape))
        shape = tuple(g if s == -1 else s for s, g in zip(shape, grid))
        bad = [d for d, (s, g) in enumerate(zip(shape, grid)) if g % s != 0]
        if bad:
            d = bad[0]
            raise ShapeMismatchError(
                describe(where, "shape", f"scope sizes dividing the block grid {grid}", shape,
                         f"dim {d}: {grid[d]} blocks is not a multiple of {shape[d]}; pick a divisor.")
            )
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "grid_shape", tuple(g // s for g, s in zip(grid, shape)))

    @property
    def ndim(self) -> int:
        """Number of scope-grid dimensions."""
        return len(self.grid_shape)

    def numscp(self) -> int:
        """Number of scopes."""
        return math.prod(self.grid_shape)

    def numblk_per_scope(self) -> int:
        """Number of blocks competing in each scope."""
        return math.prod(self.shape)

    def numel_per_scope(self) -> int:
        """Number of elements in each scope of full blocks."""
        return self.numblk_per_scope() * self.block.numel_per_block()

    def numblk(self) -> int:
        """Number of blocks over all scopes."""
        return self.numscp() * self.numblk_per_scope()

    def numel(self) -> int:
        """Number of real elements over all scopes."""
        return self.block.numel()

    def scopes(self) -> Tuple["ScopeSpec", ...]:
        """The ScopeSpecs of this scope layout (itself)."""
        return (self,)

    def views(self) -> Tuple[View, ...]:
        """The views of this spec, in canonical order."""
        return self.block.views()

    def params(self) -> Tuple[str, ...]:
        """Names of the parameters this spec touches."""
        return self.block.params()


@dataclass(frozen=True)
class ScopeCoupling:
    """Shares one budget between the scopes of several ScopeSpecs.

    The scope grid of ScopeSpec ``i`` is permuted by ``orders[i]``; all
    permuted grids must be equal. Coupled scope ``c`` holds the blocks of
    scope ``c`` of every ScopeSpec, in the order the ScopeSpecs are listed, and
    they compete for one budget: some parameters may lose more blocks than
    others.

    Args:
        scopes: The ScopeSpecs to couple (at least one).
        orders: One permutation of each scope grid; ``None`` means identity.
        name: Optional label, not part of equality.

    Raises:
        CouplingError: Orders are not permutations, scope grids disagree after
            ordering, or two views of one parameter overlap.
    """

    scopes: Tuple[ScopeSpec, ...]
    orders: Optional[Tuple[Shape, ...]] = None
    name: Optional[str] = field(default=None, compare=False)
    grid_shape: Shape = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = _label("ScopeCoupling", self.name)
        scopes = tuple(self.scopes) if isinstance(self.scopes, (tuple, list)) else None
        if not scopes:
            raise CouplingError(
                describe(where, "scopes", "a non-empty tuple of ScopeSpec", repr(self.scopes),
                         "pass the ScopeSpecs to couple, e.g. ScopeCoupling((s1, s2)).")
            )
        for i, s in enumerate(scopes):
            if not isinstance(s, ScopeSpec):
                raise CouplingError(
                    describe(where, f"scopes[{i}]", "a ScopeSpec", type(s).__name__,
                             "couple ScopeSpecs directly; list all scopes of nested couplings in one ScopeCoupling.")
                )
        _check_disjoint(_all_views(scopes), where)
        orders = _normalize_orders(self.orders, [len(s.grid_shape) for s in scopes], where)
        ref = _permute(scopes[0].grid_shape, orders[0])
        for i, (s, o) in enumerate(zip(scopes, orders)):
            got = _permute(s.grid_shape, o)
            if got != ref:
                raise CouplingError(
                    describe(
                        where,
                        f"orders[{i}]",
                        f"scope {i}'s scope grid {s.grid_shape} permuted to {ref} (scope 0's grid after its order)",
                        got,
                        "fix the order, or change the scope shapes so the scope grids line up.",
                    )
                )
        object.__setattr__(self, "scopes", scopes)
        object.__setattr__(self, "orders", orders)
        object.__setattr__(self, "grid_shape", ref)

    @property
    def ndim(self) -> int:
        """Number of scope-grid dimensions."""
        return len(self.grid_shape)

    def numscp(self) -> int:
        """Number of coupled scopes."""
        return math.prod(self.grid_shape)

    def numblk_per_scope(self) -> int:
        """Blocks competing in each coupled scope, over all coupled ScopeSpecs."""
        return sum(s.numblk_per_scope() for s in self.scopes)

    def numel_per_scope(self) -> int:
        """Elements in each coupled scope of full blocks, over all coupled ScopeSpecs."""
        return sum(s.numel_per_scope() for s in self.scopes)

    def numblk(self) -> int:
        """Number of blocks over all coupled scopes."""
        return self.numscp() * self.numblk_per_scope()

    def numel(self) -> int:
        """Number of real elements over all coupled scopes."""
        return sum(s.numel() for s in self.scopes)

    def views(self) -> Tuple[View, ...]:
        """The views of this spec, in canonical order."""
        return tuple(v for s in self.scopes for v in s.views())

    def params(self) -> Tuple[str, ...]:
        """Names of the parameters this spec touches (first-seen order)."""
        return _unique(v.param for v in self.views())


ScopeLike = Union[ScopeSpec, ScopeCoupling]
Spec = Union[View, BlockSpec, BlockCoupling, ScopeSpec, ScopeCoupling]
_SPEC_TYPES = (View, BlockSpec, BlockCoupling, ScopeSpec, ScopeCoupling)


def is_spec(x: Any) -> bool:
    """Pure: whether ``x`` is one of the five spec types."""
    return isinstance(x, _SPEC_TYPES)


# ---------------------------------------------------------------------------
# cross-view validation
# ---------------------------------------------------------------------------


def _unique(items: Iterable[str]) -> Tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _all_views(specs: Iterable[Any]) -> List[View]:
    return [v for s in specs for v in s.views()]


def _check_disjoint(views: Sequence[View], where: str) -> None:
    """Refuse overlapping views of one parameter (and shape disagreements)."""
    by_param: Dict[str, List[View]] = {}
    for v in views:
        by_param.setdefault(v.param, []).append(v)
    for name, vs in by_param.items():
        for v in vs[1:]:
            if v.param_shape != vs[0].param_shape:
                raise ShapeMismatchError(
                    describe(where, "param_shape", f"one shape for parameter {name!r}: {vs[0].param_shape}",
                             v.param_shape, "build every View of one parameter with the same param_shape.")
                )
        for i in range(len(vs)):
            for j in range(i + 1, len(vs)):
                if _views_overlap(vs[i], vs[j]):
                    raise CouplingError(
                        describe(
                            where,
                            "views",
                            f"disjoint views of parameter {name!r}",
                            f"{vs[i]} and {vs[j]} share elements",
                            "couple disjoint parts of a parameter only (each element in at most one block).",
                        )
                    )


def _views_overlap(a: View, b: View) -> bool:
    """Exact test whether two views of one parameter share an element."""
    if not intervals_overlap(a.span, b.span):
        return False
    if a.geometry.dense and b.geometry.dense:
        return True  # both cover their whole span, and the spans intersect
    import torch  # only for the rare non-dense case; construction is eager

    covered = torch.zeros(a.param_numel(), dtype=torch.bool)
    covered[_flat_positions(a, torch)] = True
    return bool(covered[_flat_positions(b, torch)].any())


def _flat_positions(v: View, torch: Any) -> Any:
    pos = torch.full((), v.offset, dtype=torch.long)
    for d, (n, s) in enumerate(zip(v.shape, v.stride)):
        shape = [1] * len(v.shape)
        shape[d] = n
        pos = pos + torch.arange(n).mul(s).reshape(shape)
    return pos.reshape(-1)


# ---------------------------------------------------------------------------
# pytree registration: specs are nodes with no leaves
# ---------------------------------------------------------------------------


def _register_pytrees() -> None:
    from torch.utils import _pytree

    def flatten(spec: Any) -> Tuple[List[Any], Any]:
        return [], spec

    def unflatten(leaves: Iterable[Any], spec: Any) -> Any:
        return spec

    for cls in _SPEC_TYPES:
        _pytree.register_pytree_node(cls, flatten, unflatten, serialized_type_name=f"sparsekit_fx.{cls.__name__}")


_register_pytrees()
