"""The main job runs end to end in its fast mode."""

import sys

import pytest

from sparsekit_fx import demo


def test_demo_fast_compiled_end_to_end(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = demo.main(["--fast", "--backend", "aot_eager", "--out", str(tmp_path / "demo")])
    text = capsys.readouterr().out
    assert len(out["rows"]) == 2 and "compiled ms" in text and "eager ms" in text
    assert out["graphs"] >= 1
    assert out["rows"][-1]["sparsity"] > 0.5  # channels + 2:4 applied by the end
    assert out["masks_reloaded_equal"]
    assert (tmp_path / "demo_layout.png").stat().st_size > 1000 and str(tmp_path / "demo_layout.png") in text


def test_demo_runs_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = demo.main(["--fast", "--no-compile", "--out", str(tmp_path / "demo")])
    assert out["png"] is None and "skipping the layout picture" in capsys.readouterr().out
    assert not (tmp_path / "demo_layout.png").exists()
