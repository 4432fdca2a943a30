"""Peer parity: WeightNormSparsifier, N:M (jaxpruner NByM) and torch.nn.utils.prune, against the peers."""

import math

import pytest
import torch
import torch.nn.utils.prune as prune
from torch import nn
from torch.ao.pruning import WeightNormSparsifier
from torch._dynamo.testing import CompileCounter

import sparsekit_fx as skf

T, F = True, False


# --------------------------------------------------------------------------
# the peers, called exactly as their users call them
# --------------------------------------------------------------------------


def wns_mask(w, **config):
    """WeightNormSparsifier.prepare/step on a Linear holding ``w``; returns its mask."""
    model = nn.Sequential(nn.Linear(w.shape[1], w.shape[0], bias=False).to(w.dtype))
    with torch.no_grad():
        model[0].weight.copy_(w)
    sparsifier = WeightNormSparsifier(**config)
    sparsifier.prepare(model, [{"tensor_fqn": "0.weight"}])
    sparsifier.step()
    return model[0].parametrizations.weight[0].mask.detach().clone()


def prune_mask(fn, w, *args, seed=None, **kwargs):
    """A torch.nn.utils.prune function applied to a module holding ``w``; returns its mask buffer."""
    m = nn.Module()
    m.weight = nn.Parameter(w.clone())
    if seed is not None:
        torch.manual_seed(seed)
    fn(m, "weight", *args, **kwargs)
    return m.weight_mask.bool()


def data(kind, shape, dtype=torch.float32):
    g = torch.Generator().manual_seed(hash((kind, shape)) % 1000)
    if kind == "randn":
        return torch.randn(shape, generator=g, dtype=dtype)
    if kind == "ints":  # many ties, in block means and in elements
        return torch.randint(-2, 3, shape, generator=g).to(dtype)
    if kind == "zeros":  # every score tied
        return torch.zeros(shape, dtype=dtype)
    raise ValueError(kind)


# --------------------------------------------------------------------------
# WeightNormSparsifier: exact masks, ties included
# --------------------------------------------------------------------------

WNS_SHAPES = [(8, 8), (7, 9), (16, 12), (5, 3), (1, 7), (13, 13)]
WNS_BLOCKS = [(1, 4), (2, 2), (4, 4), (1, 1), (3, 5)]


@pytest.mark.parametrize("block", WNS_BLOCKS, ids=str)
@pytest.mark.parametrize("shape", WNS_SHAPES, ids=str)
def test_weight_norm_masks_equal_the_sparsifier(shape, block):
    divides = shape[0] % block[0] == 0 and shape[1] % block[1] == 0
    vpb = block[0] * block[1]
    checked = 0
    for kind in ("randn", "ints", "zeros"):
        w = data(kind, shape)
        for level in (0.0, 0.3, 0.5, 0.77, 1.0):
            for zpb in sorted({None, 0, 1, max(vpb - 1, 0)}, key=str):
                config = dict(sparsity_level=level, sparse_block_shape=block, zeros_per_block=zpb)
                peer_fails = not divides and zpb is not None and 0 < zpb < vpb and level > 0
                if peer_fails:
                    # The peer crashes (level < 1) or returns a padded-shape mask (level >= 1); we refuse.
                    with pytest.raises(skf.ArgumentError, match="zeros_per_block"):
                        skf.weight_norm_masks({"w": w}, "w", **config)
                    continue
                got = skf.weight_norm_masks({"w": w}, "w", **config)["w"]
                exp = wns_mask(w, **config)
                assert got.dtype == torch.bool and got.shape == w.shape
                assert torch.equal(got, exp.bool()), (kind, config)
                checked += 1
    assert checked > 0


@pytest.mark.parametrize("norm", [1, 2, lambda t: t.abs().sqrt(), lambda t: -t])
def test_weight_norm_masks_norms_and_float64(norm):
    for shape, block in (((12, 10), (2, 4)), ((9, 8), (3, 3))):
        for kind in ("randn", "ints"):
            w = data(kind, shape, torch.float64)
            for zpb in (None, 2):
                if zpb == 2 and shape[1] % block[1]:
                    continue
                cfg = dict(sparsity_level=0.4, sparse_block_shape=block, zeros_per_block=zpb, norm=norm)
                got = skf.weight_norm_masks({"w": w}, "w", **cfg)["w"]
                assert torch.equal(got, wns_mask(w, **cfg).bool()), (kind, cfg)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_weight_norm_masks_half_precision(dtype):
    # means are summed in float32 and rounded to the weight's dtype, as avg_pool2d does
    for shape, block in (((16, 24), (2, 4)), ((7, 9), (2, 4))):
        w = data("randn", shape).to(dtype)
        cfg = dict(sparsity_level=0.5, sparse_block_shape=block)
        assert torch.equal(skf.weight_norm_masks({"w": w}, "w", **cfg)["w"], wns_mask(w, **cfg).bool())


def test_weight_norm_masks_with_nan_scores():
    w = data("ints", (8, 8))
    w[0, :4] = math.nan  # a NaN block ranks highest for the peer (topk) and for us
    w[3, 5] = math.nan
    for zpb in (None, 1):
        cfg = dict(sparsity_level=0.5, sparse_block_shape=(1, 4), zeros_per_block=zpb)
        assert torch.equal(skf.weight_norm_masks({"w": w}, "w", **cfg)["w"], wns_mask(w, **cfg).bool())


def test_weight_norm_golden_partial_edge_block_uses_its_mean():
    # 1x5 with (1,4) blocks: blocks [0:4] and the partial [4:5].
    w = torch.tensor([[2.0, 2.0, 2.0, 2.0, 1.9]])
    # means of squares: 4.0 vs 3.61 -> the partial block is zeroed (its sum 3.61 is not divided by 4)
    m = skf.weight_norm_masks({"w": w}, "w", sparsity_level=0.5, sparse_block_shape=(1, 4))["w"]
    assert m.tolist() == [[T, T, T, T, F]]
    assert torch.equal(m, wns_mask(w, sparsity_level=0.5, sparse_block_shape=(1, 4)).bool())


def test_weight_norm_ties_index_rule_differs_only_among_ties():
    w = torch.zeros(4, 8)  # eight tied blocks; half are zeroed
    torch_ties = skf.weight_norm_masks({"w": w}, "w", sparse_block_shape=(1, 4))["w"]
    index_ties = skf.weight_norm_masks({"w": w}, "w", sparse_block_shape=(1, 4), ties="index")["w"]
    assert torch.equal(torch_ties, wns_mask(w, sparse_block_shape=(1, 4)).bool())
    # our rule: the lower flat block index is kept
    assert index_ties.tolist() == [[T] * 8, [T] * 8, [F] * 8, [F] * 8]
    assert int(torch_ties.sum()) == int(index_ties.sum()) == 16
    # without ties both rules are the peer's
    w = data("randn", (7, 9))
    for zpb in (None,):
        cfg = dict(sparsity_level=0.6, sparse_block_shape=(2, 4), zeros_per_block=zpb)
        a = skf.weight_norm_masks({"w": w}, "w", ties="index", **cfg)["w"]
        assert torch.equal(a, wns_mask(w, **cfg).bool())


def test_weight_norm_spec_is_a_padded_scope():
    s = skf.weight_norm_spec("w", (7, 9), (2, 4))
    assert s.block.pad and s.block.grid_shape == (4, 3) and s.numblk_per_scope() == 12 and s.numscp() == 1
    assert not skf.weight_norm_spec("w", (8, 8), (2, 4)).block.pad


@pytest.fixture(scope="module")
def wns_compiled():
    """One inductor-compiled WeightNormSparsifier step over two tensors, shared by the tests."""

    def step(p):
        out = skf.weight_norm_masks(p, ["a", "b"], sparsity_level=0.5, sparse_block_shape=(2, 4))
        out.update(skf.weight_norm_masks(p, "c", sparsity_level=0.5, sparse_block_shape=(1, 4), zeros_per_block=2,
                                         ties="index"))
        return out

    return torch.compile(step, fullgraph=True)


def test_weight_norm_masks_compile_fullgraph_exactly(wns_compiled):
    # "c" (zeros_per_block, ties="index") once hit an Inductor C++ error on `bool | bool`.
    for kind in ("ints", "randn"):
        p = {"a": data(kind, (16, 24)), "b": data(kind, (7, 9)), "c": data(kind, (8, 12))}
        out = wns_compiled(p)
        for k in ("a", "b"):
            assert torch.equal(out[k], wns_mask(p[k], sparsity_level=0.5, sparse_block_shape=(2, 4)).bool()), k
        eager = skf.weight_norm_masks(p, "c", sparsity_level=0.5, sparse_block_shape=(1, 4), zeros_per_block=2,
                                      ties="index")["c"]
        assert torch.equal(out["c"], eager)
        if kind == "randn":
            exp = wns_mask(p["c"], sparsity_level=0.5, sparse_block_shape=(1, 4), zeros_per_block=2)
            assert torch.equal(out["c"], exp)


def test_weight_norm_tensor_level_never_recompiles_and_vmaps():
    cc = CompileCounter()

    def step(p, level):
        return skf.weight_norm_masks(p, "w", sparsity_level=level, sparse_block_shape=(2, 4), zeros_per_block=3,
                                     ties="index")

    cstep = torch.compile(step, fullgraph=True, backend=cc)
    w = data("randn", (8, 12))
    for level in (0.0, 0.25, 0.5, 0.9, 1.0):
        lv = torch.tensor(level, dtype=torch.float64)
        got = cstep({"w": w}, lv)["w"]
        assert torch.equal(got, step({"w": w}, lv)["w"])
        exp = wns_mask(w, sparsity_level=level, sparse_block_shape=(2, 4), zeros_per_block=3).bool()
        assert torch.equal(got, exp), level
    assert cc.frame_count == 1
    ws = torch.randn(3, 8, 12)
    batched = torch.func.vmap(lambda x: skf.weight_norm_masks(
        {"w": x}, "w", sparse_block_shape=(2, 4), zeros_per_block=3)["w"])(ws)
    for i in range(3):
        assert torch.equal(batched[i], wns_mask(ws[i], sparse_block_shape=(2, 4), zeros_per_block=3).bool())


def test_weight_norm_masks_are_pure():
    p = {"w": data("randn", (8, 8)), "other": torch.ones(3)}
    before = {k: v.clone() for k, v in p.items()}
    out = skf.weight_norm_masks(p, "w")
    assert set(out) == {"w"}
    assert all(torch.equal(p[k], before[k]) for k in p)


# --------------------------------------------------------------------------
# N:M along any axis (jaxpruner's NByM)
# --------------------------------------------------------------------------


def jaxpruner_n_by_m(scores, n, m, axis=-1):
    """jaxpruner's rule, transcribed: stable ascending ranks per group, keep ranks >= m - n."""
    s = scores.movedim(axis, -1)
    g = s.reshape(-1, m)
    ranks = torch.argsort(torch.argsort(g, dim=-1, stable=True), dim=-1, stable=True)
    return (ranks >= m - n).reshape(s.shape).movedim(-1, axis)


def test_golden_n_m_with_ties():
    w = torch.tensor([[3.0, -1.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0]])
    m = lambda n, mm: skf.masks({"w": w}, skf.n_m_spec("w", w.shape, mm), nnz=n)["w"].tolist()
    assert m(1, 4) == [[T, F, F, F, T, F, F, F]]
    assert m(2, 4) == [[T, T, F, F, T, T, F, F]]  # |-1| == |1|: the lower index wins
    assert m(4, 8) == [[T, F, F, F, T, T, T, F]]  # four-way tie at 2 for three places
    assert m(2, 8) == [[T, F, F, F, T, F, F, F]]
    assert m(0, 4) == [[F] * 8] and m(4, 4) == [[T] * 8]


def test_golden_n_m_along_axis_0():
    w = torch.tensor([[1.0, 0.0], [1.0, 5.0], [0.0, 5.0], [2.0, 1.0]])
    m = skf.masks({"w": w}, skf.n_m_spec("w", w.shape, 4, axis=0), nnz=2)["w"]
    assert m.tolist() == [[T, F], [F, T], [F, T], [T, F]]  # column 0: tie 1.0/1.0 -> row 0


@pytest.mark.parametrize("n, m", [(1, 4), (2, 4), (4, 8), (2, 8), (3, 6)])
@pytest.mark.parametrize("shape, axis", [((4, 24), -1), ((24, 3), 0), ((2, 24, 3), 1), ((3, 2, 24), 2)])
def test_n_m_matches_jaxpruner_without_ties_and_counts_with_ties(shape, axis, n, m):
    w = data("randn", shape)
    spec = skf.n_m_spec("w", shape, m, axis=axis)
    got = skf.masks({"w": w}, spec, nnz=n)["w"]
    assert torch.equal(got, jaxpruner_n_by_m(w.abs(), n, m, axis))
    # tied data: same number per group; we keep the lower index, jaxpruner the higher
    wt = data("ints", shape)
    got = skf.masks({"w": wt}, spec, nnz=n)["w"]
    groups = got.movedim(axis, -1).reshape(-1, m)
    assert (groups.sum(-1) == n).all()
    flipped = skf.masks({"w": wt.flip(axis)}, spec, nnz=n)["w"].flip(axis)  # reversed order == higher index wins
    assert torch.equal(flipped, jaxpruner_n_by_m(wt.abs(), n, m, axis))


def test_n_m_spec_errors():
    for call, exc, arg in [
        (lambda: skf.n_m_spec("w", (4, 10), 4), skf.ShapeMismatchError, "m"),
        (lambda: skf.n_m_spec("w", (4, 8), 0), skf.ArgumentError, "m"),
        (lambda: skf.n_m_spec("w", (4, 8), 4, axis=2), skf.ArgumentError, "axis"),
        (lambda: skf.masks({"w": torch.ones(4, 8)}, skf.n_m_spec("w", (4, 8), 4), nnz=5), skf.ArgumentError, "nnz"),
    ]:
        with pytest.raises(exc) as e:
            call()
        assert f"'{arg}'" in str(e.value) and "Fix:" in str(e.value)


# --------------------------------------------------------------------------
# torch.nn.utils.prune
# --------------------------------------------------------------------------

AMOUNTS = [0, 1, 7, 0.0, 0.3, 0.5, 0.25, 1.0]  # 0.25 * 10 = 2.5 rounds half to even


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 2, 2), (10,)], ids=str)
def test_l1_and_random_unstructured_equal_prune(shape):
    w = data("randn", shape)
    scores = data("randn", shape).abs()
    for amount in AMOUNTS:
        got = skf.l1_unstructured({"w": w}, "w", amount)["w"]
        assert torch.equal(got, prune_mask(prune.l1_unstructured, w, amount)), amount
        got = skf.l1_unstructured({"w": w}, "w", amount, values={"w": scores})["w"]
        assert torch.equal(got, prune_mask(prune.l1_unstructured, w, amount, importance_scores=scores)), amount
        got = skf.random_unstructured({"w": w}, "w", amount, seed=11)["w"]
        assert torch.equal(got, prune_mask(prune.random_unstructured, w, amount, seed=11)), amount
        gen = torch.Generator().manual_seed(11)
        assert torch.equal(skf.random_unstructured({"w": w}, "w", amount, generator=gen)["w"], got)
        noise = torch.rand(shape, generator=torch.Generator().manual_seed(11))
        assert torch.equal(skf.random_unstructured({"w": w}, "w", amount, noise=noise)["w"], got)


def test_amount_semantics_int_count_float_fraction_half_even():
    w = data("randn", (10,))
    kept = lambda a: int(skf.l1_unstructured({"w": w}, "w", a)["w"].sum())
    assert kept(3) == 7 and kept(0.3) == 7
    assert kept(0.25) == 8 and kept(0.35) == 6  # round(2.5) == 2, round(3.5) == 4
    assert kept(torch.tensor(0.25, dtype=torch.float64)) == 8 and kept(torch.tensor(3)) == 7
    assert kept(10) == 0 and kept(1.0) == 0 and kept(0) == 10


@pytest.mark.parametrize("n", [1, 2, math.inf, -math.inf, "fro", 0.5])
@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 2)], ids=str)
def test_ln_structured_equals_prune(shape, n):
    w = data("randn", shape)
    for dim in range(-len(shape), len(shape)):
        for amount in (0, 1, 0.5, 0.34):
            if n == "fro" and len(shape) > 3:
                continue
            exp = prune_mask(prune.ln_structured, w, amount, n=n, dim=dim)
            assert torch.equal(skf.ln_structured({"w": w}, "w", amount, n, dim)["w"], exp), (dim, amount)


def test_global_unstructured_equals_prune_over_a_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 5))
    params = {k: v.detach().clone() for k, v in net.named_parameters()}
    names = ["0.weight", "0.bias", "2.weight"]
    for amount in (0.3, 17, 0.5):
        peer = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 5))
        peer.load_state_dict(net.state_dict())
        prune.global_unstructured([(peer[0], "weight"), (peer[0], "bias"), (peer[2], "weight")],
                                  prune.L1Unstructured, amount=amount)
        got = skf.global_unstructured(params, names, amount)
        assert set(got) == set(names)
        for nm in names:
            mod, attr = nm.split(".")
            assert torch.equal(got[nm], getattr(peer[int(mod)], attr + "_mask").bool()), (amount, nm)


def test_prune_ties_keep_the_lower_index():
    # PyTorch's topk keeps an unspecified subset of tied entries; we keep the lowest flat indices.
    w = torch.tensor([[1.0, -1.0, 1.0, 1.0], [1.0, 2.0, -1.0, 1.0]])
    m = skf.l1_unstructured({"w": w}, "w", 3)["w"]
    assert m.tolist() == [[T, T, T, T], [F, T, F, F]]  # seven ties at |1| for four places, after the 2
    peer = prune_mask(prune.l1_unstructured, w, 3)
    assert int(peer.sum()) == 5 and bool(peer[1, 1])  # same count, same untied survivor
    g = skf.global_unstructured({"a": torch.ones(2, 2), "b": torch.ones(3)}, ["a", "b"], 2)
    assert g["a"].tolist() == [[T, T], [T, T]] and g["b"].tolist() == [T, F, F]
    c = skf.ln_structured({"w": torch.ones(3, 4)}, "w", 2, 2, dim=0)["w"]
    assert c[:, 0].tolist() == [T, F, F]


def test_prune_helpers_compile_with_tensor_amounts():
    cc = CompileCounter()
    net_params = {"a": data("randn", (6, 5)), "b": data("randn", (5,))}

    def step(p, amount, noise):
        out = skf.global_unstructured(p, ["a", "b"], amount)
        out.update(skf.ln_structured(p, "a", amount, 2, 0))
        r = skf.random_unstructured(p, "b", amount, noise=noise)
        return out, r

    cstep = torch.compile(step, fullgraph=True, backend=cc)
    noise = torch.rand(5)
    for amount in (0.2, 0.5, 0.9):
        a = torch.tensor(amount, dtype=torch.float64)
        got, r = cstep(net_params, a, noise)
        exp, er = step(net_params, amount, noise)
        assert all(torch.equal(got[k], exp[k]) for k in exp) and torch.equal(r["b"], er["b"])
    assert cc.frame_count == 1


W = {"w": torch.randn(4, 8), "v": torch.randn(3)}


@pytest.mark.parametrize(
    "call, exc, arg",
    [
        (lambda: skf.l1_unstructured(W, "w", 1.5), skf.ArgumentError, "amount"),
        (lambda: skf.l1_unstructured(W, "w", 33), skf.ArgumentError, "amount"),
        (lambda: skf.l1_unstructured(W, "w", -1), skf.ArgumentError, "amount"),
        (lambda: skf.l1_unstructured(W, "w", True), skf.ArgumentError, "amount"),
        (lambda: skf.l1_unstructured(W, "w", "half"), skf.ArgumentError, "amount"),
        (lambda: skf.l1_unstructured(W, "w", torch.ones(2)), skf.ArgumentError, "amount"),
        (lambda: skf.l1_unstructured(W, "x", 1), skf.ParamError, "params"),
        (lambda: skf.random_unstructured(W, "w", 1), skf.ArgumentError, "generator/seed/noise"),
        (lambda: skf.random_unstructured(W, "w", 1, seed=1, noise=torch.rand(4, 8)), skf.ArgumentError,
         "generator/seed/noise"),
        (lambda: skf.random_unstructured(W, "w", 1, generator=3), skf.ArgumentError, "generator"),
        (lambda: skf.random_unstructured(W, "w", 1, noise=torch.rand(3)), skf.ShapeMismatchError, "noise['w']"),
        (lambda: skf.ln_structured(W, "w", 1, "nuc", 0), skf.ArgumentError, "n"),
        (lambda: skf.ln_structured(W, "w", 1, -2, 0), skf.ArgumentError, "n"),
        (lambda: skf.ln_structured(W, "w", 1, 2, 2), skf.ArgumentError, "dim"),
        (lambda: skf.ln_structured(W, "w", 5, 2, 0), skf.ArgumentError, "amount"),
        (lambda: skf.global_unstructured(W, [], 1), skf.ArgumentError, "names"),
        (lambda: skf.global_unstructured(W, ["w", "w"], 1), skf.ArgumentError, "names"),
        (lambda: skf.weight_norm_masks(W, "v"), skf.ShapeMismatchError, "shape"),
        (lambda: skf.weight_norm_masks(W, "w", sparse_block_shape=(4,)), skf.ArgumentError, "sparse_block_shape"),
        (lambda: skf.weight_norm_masks(W, "w", sparse_block_shape=(0, 4)), skf.ArgumentError, "sparse_block_shape"),
        (lambda: skf.weight_norm_masks(W, "w", zeros_per_block=5), skf.ArgumentError, "zeros_per_block"),
        (lambda: skf.weight_norm_masks(W, "w", zeros_per_block=-1), skf.ArgumentError, "zeros_per_block"),
        (lambda: skf.weight_norm_masks(W, "w", norm=3), skf.ArgumentError, "norm"),
        (lambda: skf.weight_norm_masks(W, "w", ties="random"), skf.ArgumentError, "ties"),
        (lambda: skf.weight_norm_masks(W, "w", sparsity_level="0.5"), skf.ArgumentError, "sparsity_level"),
        (lambda: skf.weight_norm_masks(W, "w", sparsity_level=torch.tensor(0.5)), skf.ArgumentError,
         "sparsity_level"),
        (lambda: skf.weight_norm_masks(W, "w", sparsity_level=torch.tensor([0.5]), ties="index"),
         skf.ArgumentError, "sparsity_level"),
        (lambda: skf.weight_norm_masks({"w": torch.randn(5, 7)}, "w", sparse_block_shape=(2, 4), zeros_per_block=2),
         skf.ArgumentError, "zeros_per_block"),
    ],
)
def test_pruner_errors(call, exc, arg):
    with pytest.raises(exc) as e:
        call()
    msg = str(e.value)
    assert isinstance(e.value, skf.SparseKitError)
    assert f"'{arg}'" in msg and "expected" in msg and "Fix:" in msg, msg
