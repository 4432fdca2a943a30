"""The README's two commands exist, and CI runs exactly the test command."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _commands():
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    cmds = [line for b in blocks for line in b.splitlines() if line and not line.startswith("#")]
    return cmds


def test_readme_gives_two_commands_and_ci_runs_the_test_one():
    cmds = _commands()
    demo = [c for c in cmds if "sparsekit_fx.demo" in c]
    tests = [c for c in cmds if "pytest" in c and "benchmarks" not in c]
    assert len(demo) == 1 and len(tests) == 1
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests[0] in ci
