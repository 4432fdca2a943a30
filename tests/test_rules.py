"""specs_from_module: matching, layer keys, couplings, and every rule error."""

import pytest
import torch
from torch import nn

import sparsekit_fx as skf
from sparsekit_fx import BlockRule, CoupleRule, Part, RuleError


class Block(nn.Module):
    def __init__(self, d=8, h=16, heads=2):
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.fc2 = nn.Linear(h, d)
        self.attn = nn.MultiheadAttention(d, heads)


class Attn(nn.Module):
    def __init__(self, e=8):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(e, e) for _ in range(4))


def model(layers=2):
    m = nn.Module()
    m.layers = nn.ModuleList([Block() for _ in range(layers)])
    return m


def test_block_rule_one_scope_per_matching_param():
    m = model()
    tree = skf.specs_from_module(m, [BlockRule("*.fc?.weight", (1, 1), (1, 4))])
    assert isinstance(tree, tuple) and len(tree) == 4
    assert [s.params()[0] for s in tree] == [
        "layers.0.fc1.weight", "layers.0.fc2.weight", "layers.1.fc1.weight", "layers.1.fc2.weight"]
    assert all(s.shape == (1, 4) and s.block.shape == (1, 1) for s in tree)
    hash(tree)  # immutable, hashable: a constant under torch.compile


def test_channel_rule_couples_per_layer_by_wildcard_key():
    m = model()
    tree = skf.specs_from_module(m, [skf.channel_rule("*.fc1.weight", "*.fc2.weight", bias="*.fc1.bias")])
    assert len(tree) == 2
    for i, s in enumerate(tree):
        assert s.params() == (f"layers.{i}.fc1.weight", f"layers.{i}.fc1.bias", f"layers.{i}.fc2.weight")
        assert s.numblk_per_scope() == 16 and s.block.numel_per_block() == 8 + 1 + 8
    params = dict(m.named_parameters())
    mk = skf.masks(params, tree[0], nnz=4)
    rows = mk["layers.0.fc1.weight"].all(1)
    assert torch.equal(rows, mk["layers.0.fc1.bias"]) and torch.equal(rows, mk["layers.0.fc2.weight"].all(0))
    assert int(rows.sum()) == 4


def test_channel_scope_shape_applies_to_the_coupled_grid():
    tree = skf.specs_from_module(model(1), [skf.channel_rule("*.fc1.weight", "*.fc2.weight", scope=(4,))])
    assert tree[0].grid_shape == (4, 1) and tree[0].numblk_per_scope() == 4


def test_head_rule_fused_in_proj():
    m = model(1)
    tree = skf.specs_from_module(m, [skf.head_rule(2, in_proj="*.attn.in_proj_weight", out="*.attn.out_proj.weight")])
    (s,) = tree
    assert len(s.views()) == 4  # q, k, v chunks + out_proj
    params = dict(m.named_parameters())
    mk = skf.masks(params, s, nnz=1)
    w = mk["layers.0.attn.in_proj_weight"].reshape(3, 2, 4, 8)  # (qkv, head, head_dim, E)
    head = w[0, :, 0, 0]
    assert int(head.sum()) == 1
    for j in range(3):
        assert torch.equal(w[j].reshape(2, -1).all(1), head)
    assert torch.equal(mk["layers.0.attn.out_proj.weight"].reshape(8, 2, 4)[0, :, 0], head)


def test_head_rule_separate_projections():
    m = nn.Module()
    m.attn = Attn()
    (s,) = skf.specs_from_module(m, [skf.head_rule(4, q="*.q_proj.weight", k="*.k_proj.weight",
                                                   v="*.v_proj.weight", out="*.out_proj.weight")])
    assert s.numblk_per_scope() == 4 and s.block.numel_per_block() == 4 * (2 * 8)


def test_mapping_of_tensors_is_accepted():
    tree = skf.specs_from_module({"w": torch.zeros(4, 8)}, [BlockRule("w", (1, 1), (1, 4))])
    assert tree[0].views()[0].param_shape == (4, 8)


# --------------------------------------------------------------------------
# errors: every one names the rule and the parameter
# --------------------------------------------------------------------------


def test_rule_matching_nothing():
    with pytest.raises(RuleError, match=r"BlockRule\('\*\.nope'\).*no match among"):
        skf.specs_from_module(model(), [BlockRule("*.nope", (1, 1))])


def test_couple_part_matching_nothing():
    with pytest.raises(RuleError, match=r"channels.*'\*\.fc9\.weight'"):
        skf.specs_from_module(model(), [skf.channel_rule("*.fc1.weight", "*.fc9.weight")])


def test_shape_that_does_not_fit_names_rule_and_parameter():
    with pytest.raises(RuleError, match=r"BlockRule\('\*\.fc1\.weight'\).*'layers\.0\.fc1\.weight' of shape \(16, 8\)"):
        skf.specs_from_module(model(), [BlockRule("*.fc1.weight", (1, 3))])


def test_scope_that_does_not_fit():
    with pytest.raises(RuleError, match="layers.0.fc1.weight"):
        skf.specs_from_module(model(), [BlockRule("*.fc1.weight", (1, 1), (1, 3))])


def test_rank_mismatch_is_a_misfit():
    with pytest.raises(RuleError, match="layers.0.fc1.bias"):
        skf.specs_from_module(model(), [BlockRule("*.fc1.bias", (1, 1))])


def test_heads_that_do_not_divide():
    with pytest.raises(RuleError, match=r"heads.*in_proj_weight.*3 equal groups"):
        skf.specs_from_module(model(1), [skf.head_rule(3, in_proj="*.attn.in_proj_weight",
                                                      out="*.attn.out_proj.weight")])


def test_chunks_that_do_not_divide():
    with pytest.raises(RuleError, match="chunks=5"):
        skf.specs_from_module(model(1), [CoupleRule((Part("*.fc1.weight", (1, -1), chunks=5),))])


def test_missing_partner_in_a_layer():
    m = model()
    del m.layers[1].fc2
    with pytest.raises(RuleError, match=r"partner matching \['\*\.fc2\.weight'\].*layers\.1\.fc1\.weight"):
        skf.specs_from_module(m, [skf.channel_rule("*.fc1.weight", "*.fc2.weight")])


def test_two_params_for_one_layer_key():
    with pytest.raises(RuleError, match="one parameter per layer key"):
        skf.specs_from_module(model(), [CoupleRule((Part("layers.[01].fc1.weight", (1, -1)),))])


def test_coupled_grids_that_disagree():
    with pytest.raises(RuleError, match=r"channels.*layers\.0\.fc1\.weight"):
        skf.specs_from_module(model(), [CoupleRule((Part("*.fc1.weight", (1, -1)), Part("*.fc2.weight", (-1, 2), (1, 0))),
                                                   name="channels")])


def test_parameter_claimed_by_two_rules():
    with pytest.raises(RuleError, match=r"already matched by rules\[0\]"):
        skf.specs_from_module(model(), [skf.channel_rule("*.fc1.weight", "*.fc2.weight"),
                                        BlockRule("*.fc1.weight", (1, 1), (1, 4))])


def test_allow_overlap_stacks_layouts_in_rule_order():
    m = model(1)
    rules = [skf.channel_rule("*.fc1.weight", "*.fc2.weight"), BlockRule("*.fc1.weight", (1, 1), (1, 4))]
    tree = skf.specs_from_module(m, rules, allow_overlap=True)
    assert len(tree) == 2
    p = dict(m.named_parameters())
    w = skf.hard_threshold(p, tree, sparsity=0.5)["layers.0.fc1.weight"]
    assert int((w != 0).any(1).sum()) == 8 and int((w != 0).sum()) == 8 * 4  # 8 channels, then 2:4


def test_wildcard_counts_must_agree():
    with pytest.raises(RuleError, match="same number of wildcards"):
        CoupleRule((Part("*.fc1.weight", (1, -1)), Part("fc2.weight", (-1, 1))))


@pytest.mark.parametrize("bad", [
    lambda: BlockRule("", (1, 1)),
    lambda: BlockRule("*", "nope"),
    lambda: Part("*", (1,), chunks=0),
    lambda: Part("*", (1,), groups=(2,)),
    lambda: Part("*", view_shape=(-1, -1)),
    lambda: CoupleRule(()),
    lambda: skf.head_rule(0, in_proj="*", out="*"),
    lambda: skf.head_rule(2, q="*.q", out="*.o"),
    lambda: skf.specs_from_module(model(), ["*.fc1.weight"]),
    lambda: skf.specs_from_module(object(), [BlockRule("*")]),
])
def test_malformed_rules(bad):
    with pytest.raises(RuleError):
        bad()
