"""Layout: views read and written without as_strided; blocks and scopes round-trip."""

import pytest
import torch

from sparsekit_fx import View
from sparsekit_fx.layout import (
    from_blocks,
    from_scopes,
    read_view,
    to_blocks,
    to_scopes,
    write_views,
)

from . import reference as ref

VIEWS = [
    ((8, 32), None, None, 0),  # whole
    ((8, 32), (8, 2, 8, 2), (32, 16, 1, 8), 0),  # pair columns 8 apart (seed pattern)
    ((8, 32), (4, 64), None, 0),  # plain reshape
    ((8, 32), (8, 16), (32, 2), 0),  # even columns (gaps)
    ((8, 32), (8, 16), (32, 2), 1),  # odd columns
    ((6, 10), (3, 4), (10, 2), 11),  # offset and gaps in both dims
    ((4, 4, 4), (4, 4, 4), (1, 4, 16), 0),  # full transpose
    ((12,), (3,), (4,), 1),
    ((12,), (1,), (1,), 5),
    ((5, 6), (5, 1, 6), (6, 1, 1), 0),  # unit dim inserted
    ((3, 16), (16,), (1,), 16),  # one row
]


def _views():
    for ps, shape, stride, off in VIEWS:
        yield View("w", ps, shape, stride, off)


@pytest.mark.parametrize("view", list(_views()), ids=str)
def test_read_view_matches_as_strided_reference(view):
    p = torch.randn(view.param_shape)
    assert torch.equal(read_view(p, view), ref.view_tensor(p, view))
    # a non-contiguous parameter means the same thing (row-major element order)
    pt = torch.randn(tuple(reversed(view.param_shape))).permute(*reversed(range(len(view.param_shape))))
    assert not pt.is_contiguous() or pt.ndim == 1
    assert torch.equal(read_view(pt, view), ref.view_tensor(pt, view))


@pytest.mark.parametrize("view", list(_views()), ids=str)
def test_write_view_replaces_exactly_the_view(view):
    p = torch.randn(view.param_shape)
    before = p.clone()
    new = torch.randn(view.shape)
    out = write_views(p, [view], [new])
    expected = p.clone().reshape(-1)
    expected[ref.view_positions(view).reshape(-1)] = new.reshape(-1)
    assert torch.equal(out, expected.reshape(view.param_shape))
    assert torch.equal(p, before)
    # round trip: writing the view's own values gives the parameter back
    assert torch.equal(write_views(p, [view], [read_view(p, view)]), p)


def test_write_several_views_of_one_parameter():
    views = [View("qkv", (6, 4), (2, 4), (4, 1), off) for off in (16, 0)]
    p = torch.randn(6, 4)
    out = write_views(p, views, [torch.zeros(2, 4), torch.ones(2, 4)])
    assert torch.equal(out[:2], torch.ones(2, 4))
    assert torch.equal(out[2:4], p[2:4])
    assert torch.equal(out[4:], torch.zeros(2, 4))
    strided = [View("w", (4, 8), (4, 4), (8, 2), o) for o in (0, 1)]
    out = write_views(p.new_zeros(4, 8), strided, [torch.ones(4, 4), 2 * torch.ones(4, 4)])
    assert torch.equal(out[:, 0::2], torch.ones(4, 4)) and torch.equal(out[:, 1::2], 2 * torch.ones(4, 4))


@pytest.mark.parametrize("shape, block", [((6, 8), (2, 4)), ((6, 8), (1, 1)), ((4, 6, 8), (2, 3, 2)), ((9,), (3,))])
def test_blocks_round_trip_and_content(shape, block):
    x = torch.randn(shape)
    b = to_blocks(x, block)
    grid = tuple(s // k for s, k in zip(shape, block))
    assert b.shape == grid + (int(torch.tensor(block).prod()),)
    for gidx in ref.grid_iter(grid):
        sl = tuple(slice(g * k, (g + 1) * k) for g, k in zip(gidx, block))
        assert torch.equal(b[gidx], x[sl].reshape(-1))
    assert torch.equal(from_blocks(b, block), x)
    # leading batch dims are carried through
    xb = torch.randn((3,) + shape)
    assert torch.equal(from_blocks(to_blocks(xb, block), block), xb)


def test_scopes_round_trip():
    g = torch.randn(4, 6)
    s = to_scopes(g, (2, 3))
    assert s.shape == (2, 2, 6)
    assert torch.equal(s[1, 0], g[2:4, 0:3].reshape(-1))
    assert torch.equal(from_scopes(s, (2, 3)), g)
