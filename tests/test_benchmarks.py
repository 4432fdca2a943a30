"""The benchmark suite still runs: smoke mode (tiny shapes, one round), never timed.

Benchmarks never become timed assertions; this only checks that every
workload builds, traces with ``fullgraph=True`` and produces its table row.
"""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_benchmark_suite_runs_in_smoke_mode(tmp_path):
    table = tmp_path / "table.json"
    cmd = [sys.executable, "-m", "pytest", "benchmarks", "--smoke", "-q", "-p", "no:cacheprovider",
           f"--table-json={table}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "sparsekit_fx benchmark table" in proc.stdout
    import json

    rows = json.loads(table.read_text())
    impls = {(r["workload"].split()[0], r["impl"]) for r in rows}
    for wl in ("W1", "W2", "W3", "W6"):
        assert (wl, "sparsekit_fx") in impls, wl
    assert all(r["rounds"] == 1 for r in rows)
