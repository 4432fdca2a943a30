"""Integer geometry of strided views (no tensors, safe under ``torch.compile``).

A view is ``(shape, stride, offset)`` over a parameter's *row-major element
order*: element ``i`` of the view is element ``offset + sum(i[d] * stride[d])``
of ``param.reshape(-1)``. This module answers static questions about such a
view: is it inside the parameter, does it overlap itself, which elements does
it touch, and how can it be expressed with view operations (reshape, unfold,
permute) instead of ``as_strided``.

The central notion is *nesting*. Sort the dimensions of size > 1 by stride,
largest first. Define the window of the innermost dimension as ``1`` and the
window of dimension ``j`` as ``(size[j] - 1) * stride[j] + window[j + 1]``. The
view nests when every stride is at least the window of the dimensions inside
it; a nesting view never overlaps itself and can be read with ``narrow``
followed by one ``unfold`` (or ``unflatten``) per dimension. sparsekit_fx
accepts nesting views only; the (exotic) interleaved views that are injective
without nesting are refused with a clear error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

__all__ = [
    "contiguous_strides",
    "Geometry",
    "geometry",
    "intervals_overlap",
]

Shape = Tuple[int, ...]


def contiguous_strides(shape: Sequence[int]) -> Shape:
    """Pure: row-major strides of ``shape`` (size-0 and size-1 dims included)."""
    strides = []
    acc = 1
    for s in reversed(tuple(shape)):
        strides.append(acc)
        acc *= max(int(s), 1)
    return tuple(reversed(strides))


@dataclass(frozen=True)
class Geometry:
    """Static facts about one strided view.

    Attributes:
        order: Dimensions of size > 1, sorted by stride, largest first.
        windows: ``windows[j]`` is the extent covered by ``order[j:]``; the
            list has one extra trailing ``1``.
        extent: Number of flat elements between the first and the last element
            of the view, inclusive (``windows[0]``).
        nests: Whether the view nests (see module docstring).
        dense: The view is a bijection onto ``[offset, offset + numel)``.
        problem: Why the view does not nest, or ``None``.
    """

    order: Tuple[int, ...]
    windows: Tuple[int, ...]
    extent: int
    nests: bool
    dense: bool
    problem: Optional[str]


def geometry(shape: Shape, stride: Shape) -> Geometry:
    """Pure: compute the :class:`Geometry` of a view with ``shape``/``stride``."""
    big = [d for d, s in enumerate(shape) if s > 1]
    # Largest stride first; equal strides keep dim order (they overlap anyway).
    order = tuple(sorted(big, key=lambda d: (-stride[d], d)))
    windows = [1]
    problem = None
    for d in reversed(order):
        inner = windows[0]
        if stride[d] < inner:
            if problem is None:
                problem = (
                    f"dim {d} (size {shape[d]}, stride {stride[d]}) steps by less than "
                    f"the {inner} elements spanned by the dims inside it"
                )
        windows.insert(0, (shape[d] - 1) * stride[d] + inner)
    numel = math.prod(shape)
    extent = windows[0] if numel > 0 else 0
    nests = problem is None
    return Geometry(
        order=order,
        windows=tuple(windows),
        extent=extent,
        nests=nests,
        dense=nests and extent == numel,
        problem=problem,
    )


def intervals_overlap(a: Tuple[int, int], b: Tuple[int, int]) -> bool:
    """Pure: whether half-open integer intervals ``a`` and ``b`` intersect."""
    return a[0] < b[1] and b[0] < a[1] and a[0] < a[1] and b[0] < b[1]
