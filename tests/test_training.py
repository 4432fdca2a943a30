"""Pruned weights stay zero across optimiser updates, in both training styles."""

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounter
from torch.func import functional_call, grad

import sparsekit_fx as skf


def setup():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    tree = skf.specs_from_module(model, [skf.BlockRule("*.weight", (1, 1), (1, 4))])
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    return model, tree, params


def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 8, generator=g), torch.randint(0, 4, (32,), generator=g)


def test_functional_masks_after_update_inside_a_compiled_step():
    model, tree, params = setup()
    x, y = data()
    masks = skf.masks(params, tree, nnz=2)
    params = skf.apply_masks(params, masks)
    cnt = CompileCounter()

    def loss(p):
        return nn.functional.cross_entropy(functional_call(model, p, (x,)), y)

    @torch.compile(backend=cnt, fullgraph=True)
    def step(p, masks, lr):
        return skf.masked_update(p, grad(loss)(p), masks, lambda w, g: w - lr * g)

    start = loss(params)
    for i in range(20):
        params = step(params, masks, torch.tensor(0.5))
    assert cnt.frame_count == 1
    assert loss(params) < start
    for name, m in masks.items():
        assert torch.all(params[name][~m] == 0) and torch.all(params[name][m] != 0)


@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.AdamW])
@pytest.mark.parametrize("mask_grads", [False, True])
def test_mask_keeper_reapplies_after_opt_step(opt_cls, mask_grads):
    model, tree, params = setup()
    x, y = data()
    masks = skf.masks(params, tree, nnz=2)
    opt = opt_cls(model.parameters(), lr=0.1, weight_decay=0.1)
    ptrs = {n: p.data_ptr() for n, p in model.named_parameters()}
    with skf.MaskKeeper(model, masks, optimizer=opt, mask_grads=mask_grads) as keeper:
        for _ in range(5):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            if mask_grads:
                for n, m in masks.items():
                    assert torch.all(dict(model.named_parameters())[n].grad[~m] == 0)
            opt.step()
            for n, p in model.named_parameters():
                if n in masks:
                    assert torch.all(p[~masks[n]] == 0)
        assert set(keeper.masks) == set(masks)
    assert {n: p.data_ptr() for n, p in model.named_parameters()} == ptrs  # identity kept


def test_mask_keeper_without_optimizer_hook_and_mask_updates():
    model, tree, params = setup()
    keeper = skf.MaskKeeper(model, skf.masks(params, tree, nnz=3))
    w = model[0].weight
    assert int((w == 0).sum()) == 32 * 1  # 32 scopes of 4, one pruned in each
    keeper.set_masks_(skf.masks(params, tree, nnz=1))  # gradual pruning: tighter masks
    assert int((w == 0).sum()) == 32 * 3
    with torch.no_grad():
        w.add_(1.0)  # e.g. an unhooked update
    keeper.apply_()
    assert int((w == 0).sum()) == 32 * 3
    keeper.remove()


def test_removed_hooks_stop_masking():
    model, tree, params = setup()
    x, y = data()
    masks = skf.masks(params, tree, nnz=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    keeper = skf.MaskKeeper(model, masks, optimizer=opt, mask_grads=True)
    keeper.remove()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert (model[0].weight[~masks["0.weight"]] != 0).any()


def test_mask_keeper_errors():
    model, tree, params = setup()
    with pytest.raises(skf.ParamError, match="'nope'"):
        skf.MaskKeeper(model, {"nope": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(skf.ShapeMismatchError):
        skf.MaskKeeper(model, {"0.weight": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(skf.ParamError):
        skf.MaskKeeper({"w": torch.ones(2)}, {})
    with pytest.raises(skf.ParamError):
        skf.MaskKeeper(model, [1, 2])
