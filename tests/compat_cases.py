"""Registry of every public pure op for the torch.func / torch.compile compatibility suite.

Each :class:`OpCase` says how to call one op on a params dict with a tensor
hyper-parameter, which hyper-parameter values to cycle through (changing them
must never recompile), and whether a gradient w.r.t. params is meaningful.
New public ops add an entry here (see ``CASES``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List

import torch

import sparsekit_fx as skf
from sparsekit_fx import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View


@dataclasses.dataclass(frozen=True)
class OpCase:
    name: str
    fn: Callable[[Dict[str, torch.Tensor], Any], Any]  # fn(params, hyper) -> pytree of tensors
    params: Callable[[torch.dtype], Dict[str, torch.Tensor]]
    hypers: List[Any]  # tensor hyper-parameter values, cycled without recompiling
    grad: bool = False  # gradient w.r.t. params is meaningful (checked against finite differences)


def _w(dtype, *names, shape=(4, 16)):
    g = torch.Generator().manual_seed(0)
    return {n: torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) for n in names}


def _channels(dtype):
    g = torch.Generator().manual_seed(1)
    return {
        "fc1": torch.randn(8, 4, generator=g, dtype=torch.float64).to(dtype),
        "fc2": torch.randn(4, 8, generator=g, dtype=torch.float64).to(dtype),
        "bias": torch.randn(8, generator=g, dtype=torch.float64).to(dtype),
    }


V = View("w", (4, 16))
B24 = BlockSpec(V, (1, 1))
S24 = ScopeSpec(B24, (1, 4))
S_ROW = ScopeSpec(BlockSpec(V, (1, 2)), (1, -1))
CH = BlockCoupling((BlockSpec(View("fc1", (8, 4)), (1, -1)), BlockSpec(View("fc2", (4, 8)), (-1, 1)),
                    BlockSpec(View("bias", (8,), (8, 1), (1, 1)), (1, 1))), orders=((0, 1), (1, 0), (0, 1)))
S_CH = ScopeSpec(CH, ())
SC = ScopeCoupling((ScopeSpec(BlockSpec(View("a", (4, 16)), (1, 2)), (1, -1)),
                    ScopeSpec(BlockSpec(View("b", (4, 16)), (1, 4)), (1, -1))))
TREE = (S_CH, ScopeSpec(BlockSpec(View("fc1", (8, 4)), (1, 1)), (1, 4)),
        ScopeSpec(BlockSpec(View("fc2", (4, 8)), (1, 1)), (1, 4)))

i64 = lambda v: torch.tensor(v, dtype=torch.int64)
f32 = lambda v: torch.tensor(v, dtype=torch.float32)
f64 = lambda v: torch.tensor(v, dtype=torch.float64)

# partial edge blocks: (7, 9) in (2, 4) blocks, coupled with a padded transposed view
PAD = BlockCoupling((BlockSpec(View("a", (7, 9)), (2, 4), pad=True), BlockSpec(View("b", (9, 7)), (4, 2), pad=True)),
                    orders=((0, 1), (1, 0)))


def _padded(dtype):
    g = torch.Generator().manual_seed(2)
    return {"a": torch.randn(7, 9, generator=g, dtype=torch.float64).to(dtype),
            "b": torch.randn(9, 7, generator=g, dtype=torch.float64).to(dtype)}


def _wns(p, h):
    out = skf.weight_norm_masks(p, "a", sparsity_level=h, sparse_block_shape=(2, 4), ties="index")
    out.update(skf.weight_norm_masks(p, "w", sparsity_level=h, sparse_block_shape=(1, 4), zeros_per_block=2,
                                     ties="index"))
    return out


def _prune(p, h):
    return (skf.global_unstructured(p, ["a", "b"], h), skf.ln_structured(p, "a", h, 2, 1),
            skf.random_unstructured(p, "b", h, noise=p["b"].abs()))

def _prox_params(dtype):
    g = torch.Generator().manual_seed(5)
    p = {"a": torch.randn(4, 16, generator=g, dtype=torch.float64).to(dtype),
         "b": torch.randn(4, 16, generator=g, dtype=torch.float64).to(dtype)}
    p["a"][0] = 0.0  # a zero block: finite gradients there too
    return p


PROX_TREE = (ScopeSpec(BlockSpec(View("a", (4, 16)), (1, 8)), (1, -1)),
             ScopeSpec(BlockSpec(View("b", (4, 16)), (1, 8)), (1, -1)))
PROX_PAD = BlockSpec(View("a", (4, 16)), (3, 5), pad=True)


def _h(p):
    """A fixed positive diagonal metric (Adam-like spread), in the params' dtype."""
    return {k: 0.5 + (torch.arange(v.numel(), dtype=v.dtype) * 0.37 % 3).reshape(v.shape) for k, v in p.items()}


def _adam(p, lam):
    state = skf.prox_adam_init(p)
    grads = {k: torch.sin(v) for k, v in p.items()}
    new, state = skf.prox_adam_step(p, grads, state, PROX_TREE, lr=f32(0.1), lam=lam, betas=(0.9, 0.999),
                                    eps=1e-8, weight_decay=0.0)
    return new, state.exp_avg, state.exp_avg_sq


CASES: List[OpCase] = [
    OpCase("soft_threshold", lambda p, h: skf.soft_threshold(p, PROX_TREE[0], h), _prox_params,
           [f32(0.5), f32(2.0)], grad=True),
    OpCase("soft_threshold_conditioned", lambda p, h: skf.soft_threshold(p, PROX_TREE[0], h, conditioners=_h(p)),
           _prox_params, [f32(0.5), f32(2.0)], grad=True),
    OpCase("soft_threshold_tree_scaled", lambda p, h: skf.soft_threshold(p, PROX_TREE, (h, 0.3), scale=True),
           _prox_params, [f32(0.1), f32(0.4)], grad=True),
    OpCase("soft_threshold_padded", lambda p, h: skf.soft_threshold(p, PROX_PAD, h, conditioners=_h(p)),
           _prox_params, [f32(0.5), f32(1.0)], grad=True),
    OpCase("prox_adam_step", _adam, _prox_params, [f32(0.1), f32(1.0)]),
    OpCase("cubic_schedule", lambda p, h: skf.cubic_schedule(0.8, begin=2, end=12)(h) + 0 * p["w"].sum(),
           lambda d: _w(d, "w"), [i64(0), i64(5), i64(20)]),
    OpCase("block_norms", lambda p, h: skf.block_norms(p, CH, p=2), _channels, [None], grad=True),
    OpCase("block_norms_inf", lambda p, h: skf.block_norms(p, S_ROW, p=float("inf")), lambda d: _w(d, "w"), [None]),
    OpCase("block_min", lambda p, h: skf.block_min(p, CH), _channels, [None]),
    OpCase("block_max", lambda p, h: skf.block_max(p, B24), lambda d: _w(d, "w"), [None]),
    OpCase("block_reduce", lambda p, h: skf.block_reduce(p, CH, lambda b: (b * b).mean(-1)), _channels, [None], grad=True),
    OpCase("scope_scores", lambda p, h: skf.scope_scores(p, SC), lambda d: _w(d, "a", "b"), [None], grad=True),
    OpCase("kth_largest", lambda p, h: skf.kth_largest(p["w"], h), lambda d: _w(d, "w", shape=(4, 50)),
           [i64(1), i64(7), i64(50)]),
    OpCase("kth_mid", lambda p, h: skf.kth_mid(p["w"], h), lambda d: _w(d, "w"), [i64(1), i64(5)]),
    OpCase("topk_mask", lambda p, h: skf.topk_mask(p["w"], h), lambda d: _w(d, "w", shape=(3, 40)),
           [i64(0), i64(3), i64(40)]),
    OpCase("threshold_mask", lambda p, h: skf.threshold_mask(p["w"], h), lambda d: _w(d, "w"), [f32(0.0), f32(0.5)]),
    OpCase("sparsity_to_nnz", lambda p, h: skf.sparsity_to_nnz(S_ROW, h) + 0 * p["w"].sum().long(),
           lambda d: _w(d, "w"), [f32(0.25), f32(0.75)]),
    OpCase("block_masks", lambda p, h: skf.block_masks(p, SC, nnz=h), lambda d: _w(d, "a", "b"), [i64(1), i64(5)]),
    OpCase("masks", lambda p, h: skf.masks(p, S_CH, sparsity=h), _channels, [f32(0.25), f32(0.5)]),
    OpCase("hard_threshold", lambda p, h: skf.hard_threshold(p, S24, nnz=h), lambda d: _w(d, "w"),
           [i64(2), i64(1)], grad=True),
    OpCase("hard_threshold_thresholds", lambda p, h: skf.hard_threshold(p, S_ROW, thresholds=h),
           lambda d: _w(d, "w"), [f32(0.5), f32(1.5)], grad=True),
    OpCase("hard_threshold_tree", lambda p, h: skf.hard_threshold(p, TREE, nnz=(h, i64(2), i64(1))), _channels,
           [i64(4), i64(6)], grad=True),
    OpCase("masks_tree", lambda p, h: skf.masks(p, TREE, sparsity=h), _channels, [f32(0.25), f32(0.5)]),
    OpCase("padded_mean_and_hard_threshold",
           lambda p, h: (skf.block_mean(p, PAD), skf.hard_threshold(p, ScopeSpec(PAD, ()), nnz=h)), _padded,
           [i64(3), i64(7)], grad=True),
    OpCase("weight_norm_masks", _wns, lambda d: {**_padded(d), **_w(d, "w", shape=(4, 16))}, [f64(0.25), f64(0.6)]),
    OpCase("prune_helpers", _prune, _padded, [f64(0.25), f64(0.5)]),
    OpCase("apply_masks", lambda p, h: skf.apply_masks(p, {"w": p["w"].detach().abs() > h}), lambda d: _w(d, "w"),
           [f32(0.2), f32(1.0)], grad=True),
]
