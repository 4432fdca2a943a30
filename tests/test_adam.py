"""Functional Adam + prox against torch.optim.Adam/AdamW and a per-block loop prox."""

import pytest
import torch
from torch._dynamo.testing import CompileCounter
from torch.func import grad

import sparsekit_fx as skf
from sparsekit_fx import BlockCoupling, BlockSpec, ScopeSpec, View

from . import reference as ref

SHAPES = {"fc1.weight": (6, 8), "fc1.bias": (6,), "fc2.weight": (4, 6)}
ROWS = BlockSpec(View("fc1.weight", (6, 8)), (1, 4))
CHANNELS = BlockCoupling(
    (BlockSpec(View("fc1.weight", (6, 8)), (1, -1)), BlockSpec(View("fc2.weight", (4, 6)), (-1, 1))),
    orders=((0, 1), (1, 0)),
)
FC2_TILES = ScopeSpec(BlockSpec(View("fc2.weight", (4, 6)), (2, 3)), (1, -1))


def _params(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(s, generator=g, dtype=dtype) for k, s in SHAPES.items()}


def _grads(step, dtype=torch.float64):
    g = torch.Generator().manual_seed(100 + step)
    return {k: torch.randn(s, generator=g, dtype=dtype) for k, s in SHAPES.items()}


def _torch_loop(steps, specs, lams, *, lr, betas=(0.9, 0.999), eps=1e-8, wd=0.0, adamw=False, amsgrad=False):
    """torch.optim.Adam(W) + the float64 loop prox after every opt.step()."""
    params = {k: torch.nn.Parameter(v.clone()) for k, v in _params().items()}
    cls = torch.optim.AdamW if adamw else torch.optim.Adam
    opt = cls(list(params.values()), lr=lr, betas=betas, eps=eps, weight_decay=wd, amsgrad=amsgrad)
    for i in range(steps):
        for k, p in params.items():
            p.grad = _grads(i)[k]
        opt.step()
        for spec, lam in zip(specs, lams):
            h = skf.adam_conditioners(opt, params, names=spec.params())
            new = ref.soft_threshold({k: p.detach() for k, p in params.items()}, spec, lr * lam, h)
            with torch.no_grad():
                for k in spec.params():
                    params[k].copy_(new[k])
    return {k: p.detach() for k, p in params.items()}, opt


def _functional(steps, spec, lam, **kw):
    params = _params()
    state = skf.prox_adam_init(params)
    for i in range(steps):
        params, state = skf.prox_adam_step(params, _grads(i), state, spec, lam=lam, **kw)
    return params, state


@pytest.mark.parametrize("adamw", [False, True], ids=["adam-l2", "adamw"])
def test_plain_adam_matches_torch_optim(adamw):
    exp, opt = _torch_loop(5, (), (), lr=0.05, wd=0.1, adamw=adamw)
    got, state = _functional(5, None, 0.0, lr=0.05, weight_decay=0.1, decoupled_weight_decay=adamw)
    for k in SHAPES:
        torch.testing.assert_close(got[k], exp[k], rtol=1e-12, atol=1e-12)
        st = opt.state[opt.param_groups[0]["params"][list(SHAPES).index(k)]]
        torch.testing.assert_close(state.exp_avg[k], st["exp_avg"], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(state.exp_avg_sq[k], st["exp_avg_sq"], rtol=1e-12, atol=1e-12)
    assert float(state.step) == 5


@pytest.mark.parametrize("spec, lam", [(ROWS, 4.0), (CHANNELS, 6.0), (FC2_TILES, torch.tensor([[3.0], [9.0]]))],
                         ids=["rows", "channels", "scopes"])
def test_prox_adam_matches_torch_adam_plus_loop_prox(spec, lam):
    exp, _ = _torch_loop(4, (spec,), (lam,), lr=0.1, wd=0.01)
    got, _ = _functional(4, spec, lam, lr=0.1, weight_decay=0.01)
    for k in SHAPES:
        torch.testing.assert_close(got[k], exp[k], rtol=1e-9, atol=1e-10)
    norms = skf.block_norms(got, spec if not isinstance(spec, ScopeSpec) else spec.block)
    assert (norms == 0).any() and (norms > 0).any()  # the test exercises both outcomes


def test_tuple_of_disjoint_specs_and_plain_adam_for_the_rest():
    specs, lams = (ROWS, FC2_TILES), (4.0, torch.tensor([[3.0], [9.0]]))
    exp, _ = _torch_loop(3, specs, lams, lr=0.1)
    got, _ = _functional(3, list(specs), list(lams), lr=0.1)
    for k in SHAPES:  # fc1.bias is in no spec: plain Adam
        torch.testing.assert_close(got[k], exp[k], rtol=1e-9, atol=1e-10)


def test_step_argument_sets_the_bias_correction():
    params, grads = _params(), _grads(0)
    state = skf.prox_adam_init(params)
    state9 = state._replace(step=torch.tensor(9.0))
    a, sa = skf.prox_adam_step(params, grads, state9, ROWS, lr=0.1, lam=1.0)
    b, sb = skf.prox_adam_step(params, grads, state, ROWS, lr=0.1, lam=1.0, step=torch.tensor(10))
    for k in SHAPES:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert float(sa.step) == float(sb.step) == 10


def test_step_is_pure_and_passes_other_entries_through():
    params = {**_params(), "frozen": torch.randn(3, dtype=torch.float64)}
    state = skf.prox_adam_init({k: v for k, v in params.items() if k != "frozen"})
    before = {k: v.clone() for k, v in params.items()}
    m_before = {k: v.clone() for k, v in state.exp_avg.items()}
    new, _ = skf.prox_adam_step(params, _grads(0), state, CHANNELS, lr=0.1, lam=1.0)
    assert new["frozen"] is params["frozen"]
    for k in params:
        assert torch.equal(params[k], before[k])
    for k in m_before:
        assert torch.equal(state.exp_avg[k], m_before[k])


def _loss(params, x):
    h = torch.tanh(x @ params["fc1.weight"].T + params["fc1.bias"])
    return ((h @ params["fc2.weight"].T) ** 2).mean()


def _train_step(params, state, x, lr, lam, b1, b2, eps, wd):
    g = grad(_loss)(params, x)
    return skf.prox_adam_step(params, g, state, (CHANNELS,), lr=lr, lam=lam, betas=(b1, b2), eps=eps,
                              weight_decay=wd)


def test_compiled_training_step_with_tensor_hyperparameters_never_recompiles():
    # Recompiles are decided by dynamo: count frames with the dynamo-only
    # CompileCounter (the prox's Inductor numerics are checked in test_prox).
    counter = CompileCounter()
    step = torch.compile(_train_step, backend=counter, fullgraph=True)
    params = _params(torch.float32)
    state = skf.prox_adam_init(params)
    eager_p, eager_s = params, state
    x = torch.randn(16, 8)
    hyper = [(0.1, 2.0, 0.9, 0.999, 1e-8, 0.0), (0.05, 3.0, 0.8, 0.99, 1e-6, 0.01), (0.02, 0.5, 0.95, 0.9, 1e-7, 0.1)]
    for hp in hyper:
        hp = [torch.tensor(v) for v in hp]
        params, state = step(params, state, x, *hp)
        eager_p, eager_s = _train_step(eager_p, eager_s, x, *hp)
        for k in SHAPES:
            torch.testing.assert_close(params[k], eager_p[k], rtol=1e-5, atol=1e-6)
    assert counter.frame_count == 1
    assert float(state.step) == 3


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_conditioners_are_the_optimizer_denominator(amsgrad):
    _, opt = _torch_loop(3, (), (), lr=0.1, amsgrad=amsgrad)
    model_params = {k: p for k, p in zip(SHAPES, opt.param_groups[0]["params"])}
    h = skf.adam_conditioners(opt, model_params)
    assert h.keys() == set(SHAPES)
    for k, p in model_params.items():
        st = opt.state[p]
        sq = st["max_exp_avg_sq"] if amsgrad else st["exp_avg_sq"]
        exp = sq.sqrt() / (1 - 0.999 ** 3) ** 0.5 + 1e-8
        torch.testing.assert_close(h[k], exp, rtol=0, atol=0)


def test_adam_conditioners_errors():
    params = {k: torch.nn.Parameter(v) for k, v in _params().items()}
    opt = torch.optim.Adam(list(params.values()), lr=0.1)
    with pytest.raises(skf.ParamError, match="optimizer.step"):
        skf.adam_conditioners(opt, params, names=["fc1.weight"])
    assert skf.adam_conditioners(opt, params) == {}
    with pytest.raises(skf.ParamError, match="'names'"):
        skf.adam_conditioners(opt, params, names=["nope"])
    with pytest.raises(skf.ParamError, match="'params'"):
        skf.adam_conditioners(opt, [1, 2])


P = _params()
G = _grads(0)
S0 = skf.prox_adam_init(P)


@pytest.mark.parametrize(
    "call, exc, arg",
    [
        (lambda: skf.prox_adam_step(P, G, (), ROWS), skf.ArgumentError, "state"),
        (lambda: skf.prox_adam_step(P, {}, S0, ROWS), skf.ParamError, "grads"),
        (lambda: skf.prox_adam_step({"fc1.weight": P["fc1.weight"]}, G, S0, ROWS), skf.ParamError, "params"),
        (lambda: skf.prox_adam_step(P, {**G, "fc1.bias": torch.ones(3)}, S0, ROWS), skf.ShapeMismatchError,
         "grads['fc1.bias']"),
        (lambda: skf.prox_adam_step(P, G, S0, "rows"), skf.SpecError, "spec"),
        (lambda: skf.prox_adam_step(P, G, S0, (ROWS, "x")), skf.SpecError, "spec[1]"),
        (lambda: skf.prox_adam_step(P, G, S0, (ROWS, CHANNELS)), skf.CouplingError, "spec"),
        (lambda: skf.prox_adam_step(P, G, skf.prox_adam_init({"fc2.weight": P["fc2.weight"]}), ROWS),
         skf.ParamError, "spec"),
        (lambda: skf.prox_adam_step(P, G, S0, ROWS, lr=-1.0), skf.ArgumentError, "lr"),
        (lambda: skf.prox_adam_step(P, G, S0, ROWS, lr=torch.ones(2)), skf.ArgumentError, "lr"),
        (lambda: skf.prox_adam_step(P, G, S0, ROWS, betas=(0.9,)), skf.ArgumentError, "betas"),
        (lambda: skf.prox_adam_step(P, G, S0, ROWS, betas=(1.0, 0.999)), skf.ArgumentError, "betas[0]"),
        (lambda: skf.prox_adam_step(P, G, S0, ROWS, eps=-1e-8), skf.ArgumentError, "eps"),
        (lambda: skf.prox_adam_step(P, G, S0, ROWS, weight_decay="x"), skf.ArgumentError, "weight_decay"),
        (lambda: skf.prox_adam_step(P, G, S0, ROWS, lam=-1.0), skf.ArgumentError, "lam"),
        (lambda: skf.prox_adam_step(P, G, S0, (ROWS, FC2_TILES), lam=(1.0,)), skf.ArgumentError, "lam"),
        (lambda: skf.prox_adam_step(P, G, S0, ROWS, lam=torch.ones(3)), skf.ShapeMismatchError, "thresholds"),
        (lambda: skf.prox_adam_init([1]), skf.ParamError, "params"),
    ],
)
def test_prox_adam_errors(call, exc, arg):
    with pytest.raises(exc) as e:
        call()
    assert f"'{arg}'" in str(e.value) and "Fix:" in str(e.value), str(e.value)
