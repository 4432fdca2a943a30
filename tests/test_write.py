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
