"""Parity with the seed, sparsekit 0.1.5, on tie-free data (optional).

Skipped unless sparsekit is installed (it needs triton; on CPU its Triton
dispatch is disabled below). The rest of the suite uses loop references.
"""

import pytest
import torch

import sparsekit_fx as skf

sk = pytest.importorskip("sparsekit")
pytest.importorskip("triton")
import sparsekit.kernels  # noqa: E402

sparsekit.kernels._SINGLE_LOAD_LIMIT = 0  # CPU: never dispatch to Triton


def _mk(seed, *shape):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


def test_block_norms_min_max():
    w = _mk(0, 8, 32)
    b_sk = sk.BlockSpec(sk.View(w.clone(), (8, 32), (32, 1)), (2, 4))
    b_fx = skf.BlockSpec(skf.View("w", (8, 32)), (2, 4))
    for p in (1, 2):
        torch.testing.assert_close(skf.block_norms({"w": w}, b_fx, p=p), b_sk.norms(p=p))
    torch.testing.assert_close(skf.block_min({"w": w}, b_fx), b_sk.min())
    torch.testing.assert_close(skf.block_max({"w": w}, b_fx), b_sk.max())


@pytest.mark.parametrize("block, scope, nnz", [((1, 1), (1, 4), 2), ((1, 2), (1, 4), 2), ((4, 4), (1, -1), 3)])
def test_scope_hard_threshold_and_masks(block, scope, nnz):
    w = _mk(1, 8, 32)
    p_sk = w.clone()
    s_sk = sk.ScopeSpec(sk.BlockSpec(sk.View(p_sk, (8, 32), (32, 1)), block), scope)
    s_fx = skf.ScopeSpec(skf.BlockSpec(skf.View("w", (8, 32)), block), scope)
    masks_sk = list(s_sk.get_masks(nnz=nnz).values())[0]
    assert torch.equal(skf.masks({"w": w}, s_fx, nnz=nnz)["w"], masks_sk.bool())
    s_sk.hard_threshold(nnz=nnz)
    assert torch.equal(skf.hard_threshold({"w": w}, s_fx, nnz=nnz)["w"], p_sk)


def test_strided_view_coupled_2_4():
    m, k = 4, 32
    w = _mk(2, m, k)
    p_sk = w.clone()
    shape, stride = (m, k // 16, 8, 2), (k, 16, 1, 8)
    s_sk = sk.ScopeSpec(sk.BlockSpec(sk.View(p_sk, shape, stride), (1, 1, 1, 2)), (1, 1, 4, 1))
    s_fx = skf.ScopeSpec(skf.BlockSpec(skf.View("w", (m, k), shape, stride), (1, 1, 1, 2)), (1, 1, 4, 1))
    s_sk.hard_threshold(nnz=2)
    assert torch.equal(skf.hard_threshold({"w": w}, s_fx, nnz=2)["w"], p_sk)


def test_block_coupling_with_orders():
    a, b = _mk(3, 6, 5), _mk(4, 5, 6)
    pa, pb = a.clone(), b.clone()
    c_sk = sk.BlockCoupling(
        [sk.BlockSpec(sk.View(pa, (6, 5), (5, 1)), (1, -1)), sk.BlockSpec(sk.View(pb, (5, 6), (6, 1)), (-1, 1))],
        [(0, 1), (1, 0)],
    )
    c_fx = skf.BlockCoupling(
        (skf.BlockSpec(skf.View("a", (6, 5)), (1, -1)), skf.BlockSpec(skf.View("b", (5, 6)), (-1, 1))),
        orders=((0, 1), (1, 0)),
    )
    torch.testing.assert_close(skf.block_norms({"a": a, "b": b}, c_fx), c_sk.norms().reshape(c_fx.grid_shape))
    s_sk = sk.ScopeSpec(c_sk, (-1, -1))
    s_fx = skf.ScopeSpec(c_fx, ())
    s_sk.hard_threshold(nnz=3)
    out = skf.hard_threshold({"a": a, "b": b}, s_fx, nnz=3)
    assert torch.equal(out["a"], pa) and torch.equal(out["b"], pb)


def test_scope_coupling_hard_threshold():
    a, b = _mk(5, 4, 8), _mk(6, 8, 4)
    pa, pb = a.clone(), b.clone()
    sc_sk = sk.ScopeCoupling(
        [sk.ScopeSpec(sk.BlockSpec(sk.View(pa, (4, 8), (8, 1)), (1, 2)), (1, -1)),
         sk.ScopeSpec(sk.BlockSpec(sk.View(pb, (8, 4), (4, 1)), (2, 1)), (-1, 1))],
        [(0, 1), (1, 0)],
    )
    sc_fx = skf.ScopeCoupling(
        (skf.ScopeSpec(skf.BlockSpec(skf.View("a", (4, 8)), (1, 2)), (1, -1)),
         skf.ScopeSpec(skf.BlockSpec(skf.View("b", (8, 4)), (2, 1)), (-1, 1))),
        orders=((0, 1), (1, 0)),
    )
    sc_sk.hard_threshold(nnz=3)
    out = skf.hard_threshold({"a": a, "b": b}, sc_fx, nnz=3)
    assert torch.equal(out["a"], pa) and torch.equal(out["b"], pb)
