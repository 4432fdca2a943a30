"""Compatibility suite: every public pure op under eager, compile(fullgraph), vmap and grad.

For each registered op (tests/compat_cases.py):

* eager == compiled(fullgraph=True), across several tensor hyper-parameter
  values, with exactly one compiled frame (no recompiles);
* vmap over a batch of params == a Python loop, and compile(vmap) == the loop
  (through Dynamo + AOTAutograd + functorch with the ``aot_eager`` backend,
  which is where vmap meets the compiler; set ``SKF_COMPAT_INDUCTOR=1`` to
  also generate Inductor code for every vmapped op, ~10 minutes of C++
  compiling on 2 cores);
* where meaningful, torch.func.grad == finite differences (float64).

Compiled functions are cached per op so the suite stays fast on 2 CPU cores.
"""

import functools
import os
import types

import pytest
import torch
import torch._dynamo.testing
from torch.utils import _pytree as pytree

from .compat_cases import CASES

IDS = [c.name for c in CASES]
B = 3


def _eq(a, b):
    la, lb = pytree.tree_leaves(a), pytree.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        if x.is_floating_point():
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(x, y)


def _own_code(fn):
    """A wrapper with its own code object: Dynamo's recompile limit (8) is per code
    object, and every ``vmap(f)`` wrapper shares one, so each case gets its own."""

    def call(*args):
        return fn(*args)

    code = call.__code__.replace(co_name=f"call_{id(fn)}")
    return types.FunctionType(code, call.__globals__, code.co_name, None, call.__closure__)


@functools.lru_cache(maxsize=None)
def _compiled(name):
    case = next(c for c in CASES if c.name == name)
    return torch.compile(case.fn, fullgraph=True)


def frames_over(fn, args_list):
    """Dynamo frames compiled while calling ``fn`` on each argument tuple.

    Counted with ``CompileCounter`` (Dynamo only, no Inductor): recompiles are
    decided by Dynamo's guards whatever the backend, and counting Inductor
    backend calls also counts its occasional internal compile retries, which
    are not recompiles.
    """
    counter = torch._dynamo.testing.CompileCounter()
    compiled = torch.compile(_own_code(fn), backend=counter, fullgraph=True)
    for args in args_list:
        compiled(*args)
    return counter.frame_count


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_eager_equals_compiled_without_recompiles(case):
    fn = _compiled(case.name)
    params = case.params(torch.float32)
    for h in case.hypers:
        _eq(fn(params, h), case.fn(params, h))
    frames = frames_over(case.fn, [(params, h) for h in case.hypers])
    assert frames == 1, f"{case.name} recompiled: {frames} frames"


def _batched(case):
    ps = [case.params(torch.float32) for _ in range(B)]
    g = torch.Generator().manual_seed(7)
    for i, p in enumerate(ps):  # distinct members of the population
        for k in p:
            p[k] = p[k] + i * torch.randn(p[k].shape, generator=g)
    return ps, {k: torch.stack([p[k] for p in ps]) for k in ps[0]}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vmap_equals_loop_eager_and_compiled(case):
    ps, batched = _batched(case)
    h = case.hypers[-1]
    loop = pytree.tree_map(lambda *xs: torch.stack(xs), *[case.fn(p, h) for p in ps])
    _eq(torch.func.vmap(case.fn, in_dims=(0, None))(batched, h), loop)
    backend = "inductor" if os.environ.get("SKF_COMPAT_INDUCTOR") else "aot_eager"
    compiled = torch.compile(_own_code(torch.func.vmap(case.fn, in_dims=(0, None))), backend=backend, fullgraph=True)
    _eq(compiled(batched, h), loop)


GRAD = [c for c in CASES if c.grad]


@pytest.mark.parametrize("case", GRAD, ids=[c.name for c in GRAD])
def test_grad_equals_finite_differences(case):
    params = case.params(torch.float64)
    h = case.hypers[0]
    g = torch.Generator().manual_seed(3)
    probe = pytree.tree_map(lambda t: torch.randn(t.shape, generator=g, dtype=torch.float64),
                            case.fn(params, h))

    def scalar(p):
        out = case.fn(p, h)
        return sum((a * b).sum() for a, b in zip(pytree.tree_leaves(out), pytree.tree_leaves(probe))
                   if a.is_floating_point())

    grads = torch.func.grad(scalar)(params)
    eps = 1e-6
    for k, x in params.items():
        flat = x.reshape(-1)
        for idx in range(0, flat.numel(), max(1, flat.numel() // 12)):
            plus = dict(params)
            minus = dict(params)
            e = torch.zeros_like(flat)
            e[idx] = eps
            plus[k] = (flat + e).reshape(x.shape)
            minus[k] = (flat - e).reshape(x.shape)
            fd = (scalar(plus) - scalar(minus)) / (2 * eps)
            torch.testing.assert_close(grads[k].reshape(-1)[idx], fd, rtol=1e-5, atol=1e-7)
