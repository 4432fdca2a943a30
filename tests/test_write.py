"""write_through_: in place, identity and storage kept, validated first, atomic."""

import pytest
import torch
from torch import nn

import sparsekit_fx as skf
from sparsekit_fx import BlockSpec, ScopeSpec, View


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 6)
        self.fc2 = nn.Linear(6, 4)
        self.register_buffer("scale", torch.ones(4))


def _spec(name, shape):
    return ScopeSpec(BlockSpec(View(name, shape), (1, 1)), (1, 2))


def test_write_through_module_keeps_identity_and_storage():
    torch.manual_seed(0)
    model = Tiny()
    params = dict(model.named_parameters())
    ptrs = {k: v.data_ptr() for k, v in params.items()}
    objs = dict(params)
    new = skf.hard_threshold(params, _spec("fc1.weight", (6, 8)), nnz=1)
    assert skf.write_through_(model, new) is model
    for k, p in model.named_parameters():
        assert p is objs[k] and p.data_ptr() == ptrs[k]
        assert isinstance(p, nn.Parameter) and p.requires_grad
    assert torch.equal(model.fc1.weight.detach(), new["fc1.weight"].detach())
    assert ((model.fc1.weight != 0).reshape(6, 4, 2).sum(-1) == 1).all()


def test_write_through_buffers_and_mappings():
    model = Tiny()
    skf.write_through_(model, {"scale": torch.full((4,), 3.0)})
    assert torch.equal(model.scale, torch.full((4,), 3.0))
    d = {"a": torch.zeros(3)}
    t = d["a"]
    skf.write_through_(d, {"a": torch.ones(3)})
    assert d["a"] is t and torch.equal(t, torch.ones(3))


def test_write_through_non_contiguous_target():
    base = torch.zeros(6, 4)
    target = {"w": base.t()}  # non-contiguous (4, 6)
    new = torch.arange(24.0).reshape(4, 6)
    skf.write_through_(target, {"w": new})
    assert torch.equal(base.t(), new)


def test_write_through_swapped_sources_are_read_before_written():
    a, b = torch.zeros(3), torch.ones(3)
    d = {"a": a, "b": b}
    skf.write_through_(d, {"a": b, "b": a})
    assert torch.equal(a, torch.ones(3)) and torch.equal(b, torch.zeros(3))


def test_tied_parameters_are_reachable_by_every_name():
    model = Tiny()
    model.fc3 = nn.Linear(8, 6)
    model.fc3.weight = model.fc1.weight  # tied
    skf.write_through_(model, {"fc3.weight": torch.zeros(6, 8)})
    assert (model.fc1.weight == 0).all()


@pytest.mark.parametrize(
    "entry, exc, arg",
    [
        ({"nope": torch.zeros(6, 8)}, skf.ParamError, "new_params['nope']"),
        ({"fc1.weight": torch.zeros(8, 6)}, skf.ShapeMismatchError, "new_params['fc1.weight']"),
        ({"fc1.weight": torch.zeros(6, 8, dtype=torch.float64)}, skf.ParamError, "new_params['fc1.weight']"),
        ({"fc1.weight": torch.zeros(6, 8, device="meta")}, skf.ParamError, "new_params['fc1.weight']"),
        ({"fc1.weight": [0.0]}, skf.ParamError, "new_params['fc1.weight']"),
    ],
)
def test_bad_entry_writes_nothing(entry, exc, arg):
    model = Tiny()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # a good entry first: it must not be written either
    new = {"fc2.weight": torch.zeros(4, 6), **entry}
    with pytest.raises(exc) as e:
        skf.write_through_(model, new)
    assert f"'{arg}'" in str(e.value) and "Fix:" in str(e.value)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_bad_target_and_new_params_types():
    with pytest.raises(skf.ParamError):
        skf.write_through_([torch.zeros(1)], {})
    with pytest.raises(skf.ParamError):
        skf.write_through_({}, [torch.zeros(1)])


def test_failure_part_way_restores_everything(monkeypatch):
    # the third copy fails after half-writing its entry; two entries were already written
    model = Tiny()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    new = {k: torch.full_like(v, 7.0) for k, v in model.named_parameters()}
    calls = {"n": 0}
    real_copy = torch.Tensor.copy_

    def flaky_copy(self, src, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            real_copy(self.view(-1)[:1], src.reshape(-1)[:1])  # half-write this entry too
            raise RuntimeError("injected failure")
        return real_copy(self, src, *a, **k)

    monkeypatch.setattr(torch.Tensor, "copy_", flaky_copy)
    with pytest.raises(RuntimeError, match="injected"):
        skf.write_through_(model, new)
    monkeypatch.undo()
    assert calls["n"] >= 3
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_untouched_entries_are_skipped():
    model = Tiny()
    params = dict(model.named_parameters())
    new = skf.hard_threshold(params, _spec("fc1.weight", (6, 8)), nnz=2)
    assert new["fc2.weight"] is params["fc2.weight"]
    skf.write_through_(model, new, atomic=False)
    assert ((model.fc1.weight != 0).reshape(6, 4, 2).sum(-1) <= 2).all()


# --------------------------------------------------------------------------
# property: failures at any point leave every target bitwise unchanged
# --------------------------------------------------------------------------

from unittest import mock  # noqa: E402

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from .strategies import DTYPES, bitwise_equal, make_tensor  # noqa: E402


@st.composite
def write_cases(draw):
    """A model-like mapping of tensors (random shapes, dtypes, layouts, tied and aliased entries) and new values."""
    n = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    target, new = {}, {}
    for i in range(n):
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
        dtype = draw(st.sampled_from(DTYPES))
        t = make_tensor(shape, dtype, seed + i, ties=False, specials=draw(st.booleans()))
        if len(shape) >= 2 and draw(st.booleans()):
            t = t.transpose(0, 1)  # a non-contiguous target
        target[f"t{i}"] = t
        if draw(st.booleans()):
            new[f"t{i}"] = make_tensor(tuple(t.shape), dtype, seed + 100 + i, ties=False, specials=False)
        elif draw(st.booleans()):
            new[f"t{i}"] = t  # an untouched entry passed through by a pure op (skipped)
    if n >= 2 and draw(st.booleans()):  # a swap of two same-shaped entries reads sources before writing
        a, b = "t0", "t1"
        if target[a].shape == target[b].shape and target[a].dtype == target[b].dtype:
            new[a], new[b] = target[b], target[a]
    return target, new


def _snap(target):
    return {k: (v.clone(), v.data_ptr()) for k, v in target.items()}


def _unchanged(target, snap):
    for k, v in target.items():
        assert v.data_ptr() == snap[k][1], k
        assert bitwise_equal(v, snap[k][0]), f"{k} was modified"


@given(write_cases(), st.data())
def test_write_through_is_atomic_under_injected_copy_failures(case, d):
    target, new = case
    planned = [k for k, v in new.items() if v is not target[k]]
    snap = _snap(target)
    if not planned:
        assert skf.write_through_(target, new) is target
        _unchanged(target, snap)
        return
    # what a successful call must write: each source as it was before anything is written
    expected = {}
    for k, v in new.items():
        alias = next((n for n in target if v is target[n]), None)
        expected[k] = snap[alias][0] if alias is not None else v.clone()
    fail_at = d.draw(st.integers(1, len(planned)))  # fail on the n-th copy ...
    half_write = d.draw(st.booleans())  # ... after writing part of that entry
    calls = {"n": 0}
    real_copy = torch.Tensor.copy_

    def flaky_copy(self, src, *a, **k):
        calls["n"] += 1
        if calls["n"] == fail_at:
            if half_write:
                real_copy(self[(0,) * self.ndim], src.reshape(-1)[0])
            raise RuntimeError("injected failure")
        return real_copy(self, src, *a, **k)

    with mock.patch.object(torch.Tensor, "copy_", flaky_copy):
        with pytest.raises(RuntimeError, match="injected"):
            skf.write_through_(target, new)
    assert calls["n"] >= fail_at
    _unchanged(target, snap)
    # without the failure the same call writes exactly the new values, in place
    skf.write_through_(target, new)
    for k in new:
        assert target[k].data_ptr() == snap[k][1] and bitwise_equal(target[k], expected[k]), k


@given(write_cases(), st.data())
def test_a_bad_entry_anywhere_writes_nothing(case, d):
    target, new = case
    names = list(target)
    bad_kind = d.draw(st.sampled_from(["unknown", "shape", "dtype", "device", "type"]))
    victim = d.draw(st.sampled_from(names))
    t = target[victim]
    bad = {
        "unknown": ("nope", torch.zeros(1)),
        "shape": (victim, torch.zeros(tuple(t.shape) + (2,), dtype=t.dtype)),
        "dtype": (victim, torch.zeros(t.shape, dtype=torch.float64 if t.dtype != torch.float64 else torch.float32)),
        "device": (victim, torch.zeros(t.shape, dtype=t.dtype, device="meta")),
        "type": (victim, t.tolist()),
    }[bad_kind]
    items = [(k, v) for k, v in new.items() if k != bad[0]]
    items.insert(d.draw(st.integers(0, len(items))), bad)  # the bad entry at a random position
    snap = _snap(target)
    with pytest.raises(skf.SparseKitError):
        skf.write_through_(target, dict(items))
    _unchanged(target, snap)
