"""Soft thresholding (group-lasso prox), Euclidean and preconditioned.

Checked against a float64 plain loop over blocks (``reference.soft_threshold``),
for KKT optimality to float32 precision, with gradcheck for all three
gradient inputs, and eager vs compiled vs vmap vs grad.
"""

import math
import os

import pytest
import torch
from torch.func import grad, vmap

import sparsekit_fx as skf
from sparsekit_fx import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View
from sparsekit_fx.prox import preconditioned_prox, solve_mu

from . import reference as ref
from .test_compat import frames_over

EPS32 = torch.finfo(torch.float32).eps


def _pair24(name, m, k):
    return View(name, (m, k), (m, k // 16, 8, 2), (k, 16, 1, 8))


def _channels(h=6, d=5):
    return BlockCoupling((BlockSpec(View("a", (h, d)), (1, -1)), BlockSpec(View("b", (d, h)), (-1, 1))),
                         orders=((0, 1), (1, 0)))


def spec_cases():
    a, b = View("a", (6, 8)), View("b", (8, 6))
    yield "block", ("a",), BlockSpec(a, (2, 4))
    yield "elements", ("a",), BlockSpec(a, ())
    yield "pairs-2:4", ("w",), BlockSpec(_pair24("w", 4, 32), (1, 1, 1, 2))
    yield "strided", ("a",), BlockSpec(View("a", (6, 8), (6, 4), (8, 2), 1), (3, 2))
    yield "partial", ("a",), BlockSpec(View("a", (6, 8), (2, 8), (8, 1), 16), (1, 2))
    yield "channels", ("a", "b"), _channels()
    yield "3way", ("a", "b", "c"), BlockCoupling(
        (BlockSpec(a, (2, 2)), BlockSpec(b, (2, 2)), BlockSpec(View("c", (6, 8)), (2, 2))),
        orders=((0, 1), (1, 0), (0, 1)))
    yield "scope-rows", ("a",), ScopeSpec(BlockSpec(a, (1, 2)), (1, -1))
    yield "scope-2d", ("a",), ScopeSpec(BlockSpec(a, (1, 2)), (2, 2))
    yield "scope-of-coupling", ("a", "b"), ScopeSpec(_channels(), (3,))
    yield "scope-coupling", ("a", "b"), ScopeCoupling(
        (ScopeSpec(BlockSpec(View("a", (4, 8)), (1, 2)), (1, -1)),
         ScopeSpec(BlockSpec(View("b", (8, 4)), (2, 1)), (-1, 1))), orders=((0, 1), (1, 0)))
    yield "padded", ("a",), BlockSpec(a, (4, 3), pad=True)
    yield "padded-coupling", ("a", "b"), BlockCoupling(
        (BlockSpec(a, (4, 3), pad=True), BlockSpec(b, (3, 4), pad=True)), orders=((0, 1), (1, 0)))


CASES = list(spec_cases())
IDS = [c[0] for c in CASES]


def _params(names, spec, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = {v.param: v.param_shape for v in spec.views()}
    params = {n: torch.randn(shapes[n], generator=g, dtype=dtype) for n in names}
    conds = {n: (torch.rand(shapes[n], generator=g, dtype=dtype) * 2 + 0.2) for n in names}
    params["untouched"] = torch.randn(3, dtype=dtype)
    return params, conds


def _mixed_thresholds(params, spec, conds=None, seed=1):
    """Grid thresholds that zero some blocks and keep others, away from the boundary."""
    g = torch.Generator().manual_seed(seed)
    vals = {k: v * conds[k] if conds is not None and k in conds else v for k, v in params.items()}
    if isinstance(spec, (BlockSpec, BlockCoupling)):
        s = skf.block_norms(params, spec, values=vals).double()
    else:
        s = skf.scope_scores(params, spec, values=vals).double().median(-1).values
    pick = torch.rand(s.shape, generator=g) < 0.5
    f = torch.where(pick, 0.3 + 0.4 * torch.rand(s.shape, generator=g), 1.3 + 0.5 * torch.rand(s.shape, generator=g))
    return (s * f).to(next(iter(params.values())).dtype)


# --------------------------------------------------------------------------
# against the float64 loop reference
# --------------------------------------------------------------------------


@pytest.mark.parametrize("conditioned", [False, True], ids=["euclid", "precond"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_loop_reference(case, conditioned):
    _, names, spec = case
    params, conds = _params(names, spec)
    conds = conds if conditioned else None
    thr = _mixed_thresholds(params, spec, conds)
    out = skf.soft_threshold(params, spec, thr, conditioners=conds)
    exp = ref.soft_threshold(params, spec, thr, conds)
    assert out.keys() == params.keys() and out["untouched"] is params["untouched"]
    for k in names:
        torch.testing.assert_close(out[k], exp[k], rtol=1e-9, atol=1e-12)
    # a scalar threshold, scaled per block by sqrt(numel_per_block)
    t = float(thr.median()) / 2
    out = skf.soft_threshold(params, spec, t, conditioners=conds, scale=True)
    exp = ref.soft_threshold(params, spec, t, conds, scale=True)
    for k in names:
        torch.testing.assert_close(out[k], exp[k], rtol=1e-9, atol=1e-12)


def test_scale_uses_the_block_size_not_the_tensor_size():
    w = torch.randn(4, 16, dtype=torch.float64)
    spec = BlockSpec(View("w", (4, 16)), (1, 4))
    a = skf.soft_threshold({"w": w}, spec, 0.5, scale=True)["w"]
    b = skf.soft_threshold({"w": w}, spec, 0.5 * 2.0)["w"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_zero_threshold_is_the_identity():
    w = torch.randn(4, 16)
    h = torch.rand(4, 16) + 0.1
    spec = BlockSpec(View("w", (4, 16)), (1, 4))
    assert torch.equal(skf.soft_threshold({"w": w}, spec, 0.0)["w"], w)
    torch.testing.assert_close(skf.soft_threshold({"w": w}, spec, 0.0, conditioners={"w": h})["w"], w,
                               rtol=2 * EPS32, atol=0)


def test_negative_tensor_thresholds_act_as_zero():
    w = torch.randn(4, 16)
    spec = BlockSpec(View("w", (4, 16)), (1, 4))
    assert torch.equal(skf.soft_threshold({"w": w}, spec, torch.tensor(-1.0))["w"], w)


def test_inputs_are_left_unchanged():
    params, conds = _params(("a", "b"), _channels())
    before = {k: v.clone() for k, v in {**params, **{"h" + k: v for k, v in conds.items()}}.items()}
    thr = torch.full((6, 1), 0.5, dtype=torch.float64)
    skf.soft_threshold(params, _channels(), thr, conditioners=conds)
    after = {**params, **{"h" + k: v for k, v in conds.items()}}
    for k in before:
        assert torch.equal(before[k], after[k]), k


@pytest.mark.parametrize("dt", [torch.float16, torch.bfloat16])
def test_half_precision_computes_in_float32(dt):
    w = torch.randn(4, 64).to(dt)
    h = (torch.rand(4, 64) + 0.1).to(dt)
    spec = BlockSpec(View("w", (4, 64)), (1, 16))
    for conds in (None, {"w": h}):
        out = skf.soft_threshold({"w": w}, spec, 1.0, conditioners=conds)["w"]
        hf = None if conds is None else {"w": h.float()}
        exp = skf.soft_threshold({"w": w.float()}, spec, 1.0, conditioners=hf)["w"].to(dt)
        assert out.dtype == dt and torch.equal(out, exp)


def test_kernel_takes_leading_batch_dims():
    spec = ScopeSpec(_channels(), (3,))
    xs = [torch.randn(2, 6, 5), torch.randn(2, 5, 6)]
    hs = [torch.rand(2, 6, 5) + 0.5, torch.rand(2, 5, 6) + 0.5]
    t = torch.rand(2, 2, 1) + 0.5  # (lead, *scope grid)
    got = skf.soft_threshold_views(spec, xs, t, hs)
    for i in range(2):
        exp = skf.soft_threshold_views(spec, [x[i] for x in xs], t[i], [h[i] for h in hs])
        for g, e in zip(got, exp):
            torch.testing.assert_close(g[i], e)


# --------------------------------------------------------------------------
# KKT optimality of the float32 solver against float64
# --------------------------------------------------------------------------


def _kkt_data(kind, g, nb=1024, n=64):
    v = torch.randn(nb, n, generator=g)
    u = lambda: torch.rand(nb, n, generator=g)  # noqa: E731
    if kind == "adam":  # sqrt(v_hat) + eps with 20% dead inputs
        h = torch.sqrt(u() ** 4 * 1e-2) + 1e-8
        h = torch.where(u() < 0.2, torch.full_like(h, 1e-8), h)
    elif kind.startswith("lognormal"):
        h = torch.exp(torch.randn(nb, n, generator=g) * float(kind[9:]))
    else:
        h = torch.exp(torch.randn(nb, n, generator=g))
    na = (h.double() * v.double()).norm(dim=-1)
    frac = torch.rand(nb, generator=g, dtype=torch.float64) * 1.2
    if kind == "near":
        frac = 1 - torch.rand(nb, generator=g, dtype=torch.float64) * 1e-4
    if kind == "tiny":
        frac = torch.rand(nb, generator=g, dtype=torch.float64) * 1e-6
    return v, h, (na * frac).float()


@pytest.mark.parametrize("kind, passes", [("adam", 3), ("lognormal1", 3), ("lognormal1.5", 3), ("near", 3),
                                          ("tiny", 3), ("lognormal2", 3), ("lognormal3", 4)])
def test_kkt_residual_at_float32_precision(kind, passes):
    v, h, t = _kkt_data(kind, torch.Generator().manual_seed(3))
    spec = BlockSpec(View("w", tuple(v.shape)), (1, -1))
    mu, keep = solve_mu(spec, [v], [h], t[:, None], passes)
    mu, keep = mu.reshape(-1), keep.reshape(-1)
    a = h.double() * v.double()
    na, t64 = a.norm(dim=-1), t.double()
    # zeroed exactly when ||H v|| <= t (up to float32 rounding of the norm)
    assert (na[~keep] <= t64[~keep] * (1 + 8 * EPS32)).all()
    assert (na[keep] >= t64[keep] * (1 - 8 * EPS32)).all()
    # survivors: x = H v / (H + mu) with mu ||x|| = t to float32 precision
    m = mu.double()[keep, None]
    x = a[keep] / (h.double()[keep] + m)
    resid = (m[:, 0] * x.norm(dim=-1) - t64[keep]).abs() / t64[keep]
    assert resid.max() <= 4 * EPS32, float(resid.max() / EPS32)
    # the returned params are that x, rounded
    (out,) = preconditioned_prox(spec, [v], [h], t[:, None], passes)
    assert (out[~keep] == 0).all()
    assert ((out[keep].double() - x).abs() <= 4 * EPS32 * x.abs()).all()


def test_one_element_blocks_use_the_closed_form():
    v = torch.randn(64, dtype=torch.float64)
    h = torch.rand(64, dtype=torch.float64) + 0.1
    spec = BlockSpec(View("w", (64,)), ())
    out = skf.soft_threshold({"w": v}, spec, 0.3, conditioners={"w": h})["w"]
    exp = torch.sign(v) * torch.clamp(v.abs() - 0.3 / h, min=0)
    torch.testing.assert_close(out, exp, rtol=1e-15, atol=1e-15)


# --------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------


GRAD_CASES = [
    ("block", BlockSpec(View("w", (4, 8)), (1, 4))),
    ("channels", BlockCoupling((BlockSpec(View("w", (4, 3)), (1, -1)), BlockSpec(View("u", (3, 4)), (-1, 1))),
                               orders=((0, 1), (1, 0)))),
    ("scope-coupling", ScopeCoupling((ScopeSpec(BlockSpec(View("w", (4, 4)), (1, 2)), (1, -1)),
                                      ScopeSpec(BlockSpec(View("u", (4, 4)), (2, 1)), (-1, 1))),
                                     orders=((0, 1), (1, 0)))),
    ("elements", BlockSpec(View("w", (2, 3)), ())),
]


@pytest.mark.parametrize("conditioned", [False, True], ids=["euclid", "precond"])
@pytest.mark.parametrize("name, spec", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradcheck_params_thresholds_conditioners(name, spec, conditioned):
    names = tuple(dict.fromkeys(v.param for v in spec.views()))
    params, conds = _params(names, spec, seed=5)
    params.pop("untouched")
    first = spec.views()[0]
    params[first.param] = params[first.param].clone()
    params[first.param].reshape(-1)[:2] = 0.0  # an all-zero (or partly zero) block
    thr = _mixed_thresholds(params, spec, conds if conditioned else None, seed=7)
    leaves = [params[n] for n in names] + [thr] + ([conds[n] for n in names] if conditioned else [])
    leaves = [x.detach().requires_grad_() for x in leaves]

    def f(*xs):
        p = dict(zip(names, xs[: len(names)]))
        c = dict(zip(names, xs[len(names) + 1 :])) if conditioned else None
        out = skf.soft_threshold(p, spec, xs[len(names)], conditioners=c)
        return tuple(out[n] for n in names)

    assert torch.autograd.gradcheck(f, tuple(leaves), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("conditioned", [False, True], ids=["euclid", "precond"])
def test_gradients_are_finite_at_zero_blocks_and_zero_thresholds(conditioned):
    spec = BlockSpec(View("w", (3, 8)), (1, 4))
    w = torch.randn(3, 8, dtype=torch.float64)
    w[0] = 0.0  # two all-zero blocks
    h = torch.rand(3, 8, dtype=torch.float64) + 0.1

    def loss(w, h, t):
        out = skf.soft_threshold({"w": w}, spec, t, conditioners={"w": h} if conditioned else None)["w"]
        return (out * torch.arange(24.0, dtype=w.dtype).reshape(3, 8)).sum()

    for t in (torch.tensor(0.5, dtype=torch.float64), torch.zeros((), dtype=torch.float64)):
        gs = grad(loss, argnums=(0, 1, 2))(w, h, t)
        assert all(torch.isfinite(g).all() for g in gs)
    # t = 0 is the identity, also on zero blocks: the gradient passes straight through
    gw = grad(loss)(w, h, torch.zeros((), dtype=torch.float64))
    torch.testing.assert_close(gw, torch.arange(24.0, dtype=w.dtype).reshape(3, 8))


# --------------------------------------------------------------------------
# eager vs compile(fullgraph) vs vmap vs grad; no recompiles
# --------------------------------------------------------------------------

# Small on purpose: Inductor unrolls short reductions and compiling is the slow part.
COMPAT = ScopeSpec(_channels(4, 3), (2,))


def _compat_loss(a, b, ha, hb, t):
    out = skf.soft_threshold({"a": a, "b": b}, COMPAT, t, conditioners={"a": ha, "b": hb})
    return (out["a"] ** 2).sum() + (out["b"] * torch.arange(12.0).reshape(3, 4)).sum()


def _compat_fwd(a, b, ha, hb, t):
    out = skf.soft_threshold({"a": a, "b": b}, COMPAT, t, conditioners={"a": ha, "b": hb})
    return out["a"], out["b"]


def test_eager_compiled_vmap_and_grad_agree():
    g = torch.Generator().manual_seed(11)
    a, b = torch.randn(4, 4, 3, generator=g), torch.randn(4, 3, 4, generator=g)
    ha, hb = torch.rand(4, 4, 3, generator=g) + 0.2, torch.rand(4, 3, 4, generator=g) + 0.2
    t = torch.tensor([[0.6], [1.2]])  # the scope grid is (2, 1)
    fwd = torch.compile(_compat_fwd, fullgraph=True)
    for i in range(2):
        for e, c in zip(_compat_fwd(a[i], b[i], ha[i], hb[i], t), fwd(a[i], b[i], ha[i], hb[i], t)):
            torch.testing.assert_close(c, e, rtol=4 * EPS32, atol=1e-6)
    # new threshold values: no recompile (Dynamo frames, counted without Inductor)
    assert frames_over(_compat_fwd, [(a[0], b[0], ha[0], hb[0], t), (a[1], b[1], ha[1], hb[1], t * 3)]) == 1
    # vmap over a batch of params and conditioners == a loop
    va, vb = vmap(_compat_fwd, in_dims=(0, 0, 0, 0, None))(a, b, ha, hb, t)
    for i in range(4):
        ea, eb = _compat_fwd(a[i], b[i], ha[i], hb[i], t)
        torch.testing.assert_close(va[i], ea)
        torch.testing.assert_close(vb[i], eb)
    # compile(vmap(grad)) == a loop of eager grads, for all three inputs. The
    # backend is aot_eager (dynamo + AOTAutograd + functorch, where a custom
    # autograd.Function would be silently ignored) to spare a second C++
    # compile; SKF_INDUCTOR_GRAD=1 runs it through Inductor as well.
    gfn = grad(_compat_loss, argnums=(0, 1, 2, 3, 4))
    backend = "inductor" if os.environ.get("SKF_INDUCTOR_GRAD") else "aot_eager"
    cvg = torch.compile(vmap(gfn, in_dims=(0, 0, 0, 0, None)), backend=backend, fullgraph=True)
    got = cvg(a, b, ha, hb, t)
    for i in range(4):
        exp = gfn(a[i], b[i], ha[i], hb[i], t)
        for gi, ei in zip(got, exp):
            torch.testing.assert_close(gi[i], ei, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------

W = {"w": torch.randn(4, 8)}
B = BlockSpec(View("w", (4, 8)), (1, 4))
S = ScopeSpec(B, (1, -1))


@pytest.mark.parametrize(
    "call, exc, arg",
    [
        (lambda: skf.soft_threshold(W, "w", 0.1), skf.SpecError, "spec"),
        (lambda: skf.soft_threshold(W, B.view, 0.1), skf.SpecError, "spec"),
        (lambda: skf.soft_threshold(W, B, torch.ones(4)), skf.ShapeMismatchError, "thresholds"),
        (lambda: skf.soft_threshold(W, S, torch.ones(4, 2)), skf.ShapeMismatchError, "thresholds"),
        (lambda: skf.soft_threshold(W, B, torch.ones(4, 2, dtype=torch.long)), skf.ArgumentError, "thresholds"),
        (lambda: skf.soft_threshold(W, B, "0.1"), skf.ArgumentError, "thresholds"),
        (lambda: skf.soft_threshold(W, B, -0.1), skf.ArgumentError, "thresholds"),
        (lambda: skf.soft_threshold(W, B, math.nan), skf.ArgumentError, "thresholds"),
        (lambda: skf.soft_threshold(W, B, 0.1, conditioners=[W["w"]]), skf.ParamError, "conditioners"),
        (lambda: skf.soft_threshold(W, B, 0.1, conditioners={}), skf.ParamError, "conditioners"),
        (lambda: skf.soft_threshold(W, B, 0.1, conditioners={"w": torch.ones(8, 4)}), skf.ShapeMismatchError,
         "conditioners['w']"),
        (lambda: skf.soft_threshold(W, B, 0.1, conditioners={"w": torch.ones(4, 8, dtype=torch.int32)}),
         skf.ParamError, "conditioners['w']"),
        (lambda: skf.soft_threshold({}, B, 0.1), skf.ParamError, "params"),
        (lambda: skf.soft_threshold({"w": torch.ones(4, 4)}, B, 0.1), skf.ShapeMismatchError, "params['w']"),
        (lambda: skf.soft_threshold(W, B, 0.1, passes=0), skf.ArgumentError, "passes"),
        (lambda: skf.soft_threshold(W, B, 0.1, passes=2.0), skf.ArgumentError, "passes"),
        (lambda: skf.soft_threshold(W, B, 0.1, scale=1), skf.ArgumentError, "scale"),
    ],
)
def test_soft_threshold_errors(call, exc, arg):
    before = W["w"].clone()
    with pytest.raises(exc) as e:
        call()
    assert f"'{arg}'" in str(e.value) and "Fix:" in str(e.value), str(e.value)
    assert torch.equal(W["w"], before)


@pytest.mark.parametrize("conditioned", [False, True], ids=["euclid", "precond"])
def test_spec_tree_equals_one_call_per_spec(conditioned):
    a, b = View("a", (6, 8)), View("b", (6, 8))
    tree = (BlockSpec(a, (1, 4)), BlockSpec(b, (1, 4)), ScopeSpec(BlockSpec(View("c", (8, 6)), (2, 1)), (-1, 1)))
    g = torch.Generator().manual_seed(3)
    params = {n: torch.randn(sh, generator=g, dtype=torch.float64) for n, sh in (("a", (6, 8)), ("b", (6, 8)),
                                                                              ("c", (8, 6)))}
    conds = {n: torch.rand(v.shape, generator=g, dtype=torch.float64) + 0.5 for n, v in params.items()}
    conds = conds if conditioned else None
    thr = (torch.full((6, 2), 0.8, dtype=torch.float64), 1.2, 0.5)
    for batched in (True, False):
        with skf.batching(batched):
            out = skf.soft_threshold(params, tree, thr, conditioners=conds)
        for s, t in zip(tree, thr):
            one = skf.soft_threshold(params, s, t, conditioners=conds)
            name = s.params()[0]
            torch.testing.assert_close(out[name], one[name], rtol=1e-12, atol=1e-14)
