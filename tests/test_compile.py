"""Compiled steps: one graph per spec tree, no recompiles, cached helper, eager switch."""

import pytest
import torch
import torch._dynamo.testing

import sparsekit_fx as skf
from sparsekit_fx import BlockSpec, ScopeSpec, View

from .test_compat import frames_over
from .test_tree import transformer_tree


def cubic_sparsity(step, final=0.75, steps=100):
    """A gradual-pruning schedule as a pure tensor function (Zhu & Gupta)."""
    frac = (step.to(torch.float64) / steps).clamp(0, 1)
    return final * (1 - (1 - frac) ** 3)


def test_twelve_layer_tree_is_one_graph_and_a_schedule_never_recompiles():
    # 72 matrices (q,k,v,o,fc1,fc2 x 12), 2:4 on each, coupled fc1-row/fc2-column channels.
    params, tree = transformer_tree(layers=12, d=8, h=16)
    assert len(tree) == 12 + 72

    def step(p, sparsity):
        p = skf.hard_threshold(p, tree[:12], sparsity=sparsity)
        return skf.hard_threshold(p, tree[12:], nnz=2)

    # Inductor compiles the whole tree as one graph and matches eager along the schedule...
    compiled = torch.compile(step, fullgraph=True)
    for i in (0, 37, 100):
        s = cubic_sparsity(torch.tensor(i))
        out, ref = compiled(params, s), step(params, s)
        assert all(torch.equal(out[k], ref[k]) for k in params)
    # ...and Dynamo compiles exactly one frame over all 101 steps of the schedule.
    frames = frames_over(step, [(params, cubic_sparsity(torch.tensor(i))) for i in range(101)])
    assert frames == 1
    kept = (out["0.fc1"].abs().sum(1) > 0).sum().item()
    assert kept == 16 - int(0.75 * 16)


def test_equal_but_distinct_specs_and_tensor_hypers_do_not_recompile():
    op = lambda p, s, t: skf.hard_threshold(p, s, thresholds=t)  # noqa: E731
    f = torch.compile(op, fullgraph=True)
    params = {"w": torch.randn(4, 16)}
    calls = []
    for i, t in enumerate([0.1, 0.5, 1.0]):
        spec = ScopeSpec(BlockSpec(View("w", (4, 16)), (1, 2)), (1, -1), name=f"instance{i}")
        out = f(params, spec, torch.tensor(t))
        ref = skf.hard_threshold(params, spec, thresholds=t)
        assert torch.equal(out["w"], ref["w"])
        calls.append((params, spec, torch.tensor(t)))
    assert frames_over(op, calls) == 1


def test_compile_step_is_cached_per_tree_and_has_its_own_recompile_budget():
    params = {f"w{i}": torch.randn(4, 8) for i in range(10)}
    specs = [ScopeSpec(BlockSpec(View(f"w{i}", (4, 8)), (1, 1)), (1, 4)) for i in range(10)]
    # ten different trees through one helper: more than Dynamo's per-code limit of 8
    for s in specs:
        step = skf.compile_step(skf.hard_threshold, s)
        out = step(params, nnz=torch.tensor(2))
        assert torch.equal(out[s.params()[0]], skf.hard_threshold(params, s, nnz=2)[s.params()[0]])
    same = ScopeSpec(BlockSpec(View("w0", (4, 8)), (1, 1), name="other label"), (1, 4))
    assert skf.compile_step(skf.hard_threshold, same) is skf.compile_step(skf.hard_threshold, specs[0])
    assert skf.compile_step(skf.hard_threshold, tuple(specs)) is not skf.compile_step(skf.hard_threshold, specs[0])


def test_inplace_step_equals_pure_step_plus_write_through():
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Linear(8, 4))
    spec = (ScopeSpec(BlockSpec(View("0.weight", (8, 16)), (1, 1)), (1, 4)),
            ScopeSpec(BlockSpec(View("1.weight", (4, 8)), (1, 1)), (1, 4)))
    params = dict(model.named_parameters())
    expected = skf.hard_threshold(params, spec, nnz=2)
    ptrs = {k: v.data_ptr() for k, v in params.items()}
    step_ = skf.compile_step(skf.hard_threshold, spec, inplace=True)
    assert step_(params, nnz=torch.tensor(2)) is None
    for k, v in model.named_parameters():
        assert v.data_ptr() == ptrs[k] and torch.equal(v.detach(), expected[k].detach())


def test_eager_switch(monkeypatch):
    monkeypatch.setenv("SPARSEKIT_FX_EAGER", "1")
    spec = ScopeSpec(BlockSpec(View("w", (4, 8)), (1, 1)), (1, 4))
    step = skf.compile_step(skf.hard_threshold, spec)
    assert not hasattr(step, "_torchdynamo_orig_callable")
    assert torch.equal(step({"w": torch.ones(4, 8)}, nnz=1)["w"].sum(), torch.tensor(8.0))


def test_compile_step_errors():
    with pytest.raises(skf.ArgumentError):
        skf.compile_step("not callable", ())
    with pytest.raises(skf.ArgumentError):
        skf.compile_step(skf.hard_threshold, (), fullgraph=False)
