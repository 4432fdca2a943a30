"""The README's quickstart and workflow examples run as written (compiled with the eager backend)."""

import pathlib
import re

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _blocks(start, stop):
    text = (ROOT / "README.md").read_text()
    section = text[text.index(start):text.index(stop)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_quickstart_and_workflow_examples_run(tmp_path, monkeypatch):
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model=None, **kw: real(model, **{**kw, "backend": "eager"}))
    monkeypatch.chdir(tmp_path)  # the save/load example writes files
    blocks = _blocks("## Quickstart", "## API overview")
    assert len(blocks) >= 6
    ns = {}
    for code in blocks:
        exec(compile(code, "README.md", "exec"), ns)
    assert (tmp_path / "specs.json").exists() and (tmp_path / "masks.pt").exists()
    assert set(ns["masks"]) == {"0.weight", "2.weight"}
