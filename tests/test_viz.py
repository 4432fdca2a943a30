"""draw_layout writes a PNG whose kept and pruned blocks differ; the sparsity table."""

import sys

import pytest
import torch

import sparsekit_fx as skf
from sparsekit_fx import BlockSpec, ScopeSpec, View
from sparsekit_fx import viz

PRUNED = torch.tensor([0x3D, 0x3D, 0x3D]) / 255.0


def spec():
    return ScopeSpec(BlockSpec(View("w", (2, 8)), (1, 4)), ())


def _pixels(path):
    image = pytest.importorskip("matplotlib.image")
    return torch.from_numpy(image.imread(str(path))[..., :3].copy())


def _near(img, rgb):
    return int(((img - rgb).abs().amax(-1) < 0.02).sum())


def test_png_pixels_differ_between_kept_and_pruned_blocks(tmp_path):
    pytest.importorskip("matplotlib")
    s = spec()
    all_kept = torch.ones(1, 1, 4, dtype=torch.bool)  # scope layout: one scope of the 4 blocks
    first_pruned = torch.tensor([[[False, True, True, True]]])
    a = viz.draw_layout(s, all_kept, tmp_path / "a.png")
    b = viz.draw_layout(s, first_pruned, tmp_path / "b.png")
    assert (tmp_path / "a.png").stat().st_size > 1000 and b == str(tmp_path / "b.png")
    pa, pb = _pixels(a), _pixels(b)
    assert pa.shape == pb.shape and not torch.equal(pa, pb)
    assert _near(pb, PRUNED) > _near(pa, PRUNED) + 500  # the pruned block is drawn dark grey


def test_layout_only_tree_and_element_masks(tmp_path):
    pytest.importorskip("matplotlib")
    fc1 = BlockSpec(View("fc1.weight", (16, 8)), (1, -1))
    fc2 = BlockSpec(View("fc2.weight", (8, 16)), (-1, 1))
    ch = ScopeSpec(skf.BlockCoupling((fc1, fc2), ((0, 1), (1, 0))), (4,))
    nm = ScopeSpec(BlockSpec(View("w", (3, 4, 8)), (1, 1, 2)), (1, 1, 4))  # 3-d shown as (3, 32)
    p = {"fc1.weight": torch.randn(16, 8), "fc2.weight": torch.randn(8, 16), "w": torch.randn(3, 4, 8)}
    out = viz.draw_layout((ch, nm), None, tmp_path / "layout.png", title="t")
    assert (tmp_path / "layout.png").stat().st_size > 1000
    m = skf.masks(p, (ch, nm), nnz=(2, 2))
    viz.draw_layout((ch, nm), m, tmp_path / "masks.png", max_rows=4, max_cols=8)
    assert _near(_pixels(tmp_path / "masks.png"), PRUNED) > _near(_pixels(out), PRUNED) + 500


def test_layout_maps_share_ids_across_coupled_params():
    fc1 = BlockSpec(View("a", (4, 3)), (1, -1))
    fc2 = BlockSpec(View("b", (3, 4)), (-1, 1))
    maps = viz.layout_maps(ScopeSpec(skf.BlockCoupling((fc1, fc2), ((0, 1), (1, 0))), (2,)))
    assert maps["a"][0][:, 0].tolist() == maps["b"][0][0].tolist() == [0, 1, 2, 3]
    assert maps["a"][1][:, 0].tolist() == [0, 0, 1, 1]
    gaps = viz.layout_maps(BlockSpec(View("g", (2, 4), (2, 2), (4, 2)), (1, 1)))
    assert gaps["g"][0].tolist() == [[0, -1, 1, -1], [2, -1, 3, -1]]


def test_missing_matplotlib_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"sparsekit_fx\[viz\]"):
        viz.draw_layout(spec(), None, tmp_path / "x.png")


def test_sparsity_table():
    model = torch.nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]))
        model.bias.zero_()
    text = skf.sparsity_table(model)
    lines = text.splitlines()
    assert lines[0].split() == ["parameter", "shape", "numel", "nonzero", "sparsity"]
    assert lines[2].split() == ["weight", "(2,", "4)", "8", "3", "62.5%"]
    assert lines[3].split() == ["bias", "(2,)", "2", "0", "100.0%"]
    assert lines[-1].split() == ["total", "10", "3", "70.0%"]
    masked = skf.sparsity_table(dict(model.named_parameters()), {"weight": torch.ones(2, 4, dtype=torch.bool)})
    assert masked.splitlines()[2].split()[-1] == "0.0%" and len(masked.splitlines()) == 5
    with pytest.raises(skf.ParamError):
        skf.sparsity_table([1])
