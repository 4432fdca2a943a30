"""Every python block of docs/migration.md runs, on its own, and its asserts hold.

A block whose first line is ``# needs: skf.NAME`` is skipped while ``sparsekit_fx``
has no ``NAME`` (functions built in parallel, e.g. soft_threshold).
"""

import pathlib
import re

import pytest

import sparsekit_fx as skf

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "migration.md"


def _blocks():
    text = DOC.read_text()
    out = []
    for match in re.finditer(r"```python\n(.*?)```", text, re.S):
        heading = re.findall(r"^#{2,6} (.+)$", text[: match.start()], re.M)
        title = re.sub(r"[^a-z0-9]+", "-", heading[-1].lower()).strip("-") if heading else "top"
        line = text.count("\n", 0, match.start(1))  # keep doc line numbers in tracebacks
        out.append((f"{len(out):02d}-{title[:40]}", "\n" * line + match.group(1)))
    return out


BLOCKS = _blocks()


def test_the_guide_has_runnable_blocks_for_every_peer():
    text = DOC.read_text()
    for peer in ("sparsekit", "WeightNormSparsifier", "torch.nn.utils.prune", "jaxpruner"):
        assert f"From {peer}" in text or f"From `{peer}`" in text or f"From `torch.ao.pruning.{peer}`" in text, peer
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("code", [b for _, b in BLOCKS], ids=[i for i, _ in BLOCKS])
def test_migration_block_runs(code):
    need = re.match(r"# needs: skf\.(\w+)", code.lstrip("\n"))
    if need and not hasattr(skf, need.group(1)):
        pytest.skip(f"sparsekit_fx.{need.group(1)} is not there yet")
    exec(compile(code, str(DOC), "exec"), {"__name__": "migration_snippet"})
