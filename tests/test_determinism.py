"""Determinism: identical scores and masks across runs, thread counts and eager vs compiled.

The hard cases are *mathematical* ties whose floating-point sums depend on the
order of addition: blocks holding the same values in another order. A
reduction kernel adds in an order chosen by the backend (Inductor vectorises
differently from eager) and by the thread count, so such blocks used to be
ranked differently by eager and compiled code. Norms are now summed in a fixed
pairwise order with elementwise ops (see ``sparsekit_fx.stats``), which makes
these cases bitwise reproducible. Ties (bitwise-equal scores) break by index.

Compilation is slow, so the compiled side uses a few fixed steps (one per
layout, cached by ``compile_step``) fed with several data sets of one shape.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

import sparsekit_fx as skf
from sparsekit_fx import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View

from .strategies import bitwise_equal


def scores_and_masks(params, spec, nnz):
    return skf.scope_scores(params, spec), skf.block_masks(params, spec, nnz=nnz)


@contextlib.contextmanager
def threads(n):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _permuted_copies(shape, block, generator):
    """A tensor whose neighbouring blocks along the last dim hold the same values in other orders."""
    rows, cols = shape
    base = torch.randn(rows, block, generator=generator)
    reps = []
    for _ in range(cols // block):
        perm = torch.randperm(block, generator=generator)
        reps.append(base[:, perm])
    return torch.cat(reps, dim=1)


# Layouts: (name, spec, params factory(generator, variant), nnz)
ROWS = ScopeSpec(BlockSpec(View("w", (16, 64)), (1, 8)), (1, 4))  # 4 blocks per scope: pairwise ranks
CH = ScopeSpec(BlockCoupling((BlockSpec(View("fc1", (48, 16)), (1, -1)), BlockSpec(View("fc2", (16, 48)), (-1, 1))),
                             orders=((0, 1), (1, 0))), ())  # 48 coupled channels: radix bisection
LAYERS = ScopeCoupling(tuple(ScopeSpec(BlockSpec(View(f"l{i}", (64, 96)), (-1, -1)), ()) for i in range(3)))


def _rows(g, variant):
    w = _permuted_copies((16, 64), 8, g)
    return {"w": _special(w, g, variant)}


def _channels(g, variant):
    rows = torch.randn(24, 16, generator=g)
    perm = torch.randperm(16, generator=g)
    fc1 = torch.cat([rows, rows[:, perm]])  # channel i and i + 24 are permutations of each other
    fc2 = torch.zeros(16, 48)
    fc2[:, :24] = torch.randn(16, 24, generator=g)
    fc2[:, 24:] = fc2[torch.randperm(16, generator=g), :24]
    return {"fc1": _special(fc1, g, variant), "fc2": fc2}


def _layers(g, variant):
    base = torch.randn(64 * 96, generator=g)
    out = {}
    for i in range(3):  # every layer holds the same values in another order: a three-way tie
        out[f"l{i}"] = base[torch.randperm(base.numel(), generator=g)].reshape(64, 96)
    out["l1"] = _special(out["l1"], g, variant)
    return out


def _special(x, g, variant):
    if variant == "plain":
        return x
    if variant == "equal":
        return torch.ones_like(x)
    pick = torch.randint(0, 20, x.shape, generator=g)
    x = torch.where(pick == 0, torch.tensor(math.nan), x)
    return torch.where(pick == 1, torch.tensor(math.inf), x)


LAYOUTS = [("rows", ROWS, _rows, 2), ("channels", CH, _channels, 24), ("layers", LAYERS, _layers, 1)]
VARIANTS = ["plain", "equal", "nan_inf"]


def _assert_same(a, b):
    assert bitwise_equal(a[0], b[0]), "scores differ"
    assert torch.equal(a[1], b[1]), "block masks differ"


@pytest.mark.parametrize("name, spec, make, nnz", LAYOUTS, ids=[x[0] for x in LAYOUTS])
def test_same_result_across_runs_and_thread_counts(name, spec, make, nnz):
    for variant in VARIANTS:
        params = make(torch.Generator().manual_seed(1), variant)
        with threads(1):
            one = scores_and_masks(params, spec, nnz)
        with threads(2):
            two = scores_and_masks(params, spec, nnz)
            again = scores_and_masks(params, spec, nnz)
        _assert_same(one, two)
        _assert_same(two, again)


def test_whole_tensor_blocks_are_thread_count_independent():
    # one block per parameter: a full reduction, which a reduction kernel splits across threads
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1 << 18, generator=g)
    params = {f"l{i}": base[torch.randperm(base.numel(), generator=g)].reshape(512, 512) for i in range(3)}
    spec = ScopeCoupling(tuple(ScopeSpec(BlockSpec(View(f"l{i}", (512, 512)), (-1, -1)), ()) for i in range(3)))
    with threads(1):
        one = scores_and_masks(params, spec, 1)
    with threads(2):
        two = scores_and_masks(params, spec, 1)
    _assert_same(one, two)


@pytest.mark.parametrize("name, spec, make, nnz", LAYOUTS, ids=[x[0] for x in LAYOUTS])
def test_eager_equals_compiled(name, spec, make, nnz):
    step = skf.compile_step(scores_and_masks, spec)
    for seed in range(2):
        for variant in VARIANTS:
            params = make(torch.Generator().manual_seed(seed), variant)
            _assert_same(scores_and_masks(params, spec, nnz), step(params, torch.tensor(nnz)))


def test_identical_blocks_tie_and_break_by_index():
    # blocks holding the same values in the same order tie bitwise: the lower index wins
    w = torch.randn(16, 8).repeat(1, 8)
    keep = skf.block_masks({"w": w}, ROWS, nnz=2)
    assert keep.sum(-1).eq(2).all() and keep[..., :2].all()


@pytest.mark.parametrize("n", [4, 32, 33, 100, 5000])
def test_all_equal_scores_keep_the_first_nnz(n):
    x = torch.ones(2, n)
    k = n // 3
    keep = skf.topk_mask(x, k)
    assert keep[:, :k].all() and not keep[:, k:].any()
    x = torch.full((2, n), math.nan)
    assert torch.equal(skf.topk_mask(x, k), keep)
