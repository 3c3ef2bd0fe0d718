"""The wave-scale benchmark keeps working: it runs at N=250 and prints its tables.

Only that it completes and prints is asserted; its timings are measurements for
docs/performance.md, never pass/fail conditions.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from personalization_assets.campaign.paths import PROJECT_ROOT

# A whole `cpo run` in a fresh interpreter: `pytest -m "not e2e"` skips it.
pytestmark = pytest.mark.e2e

SCRIPT = PROJECT_ROOT / "benchmarks" / "wave_scale.py"


def test_wave_scale_benchmark_runs_at_250_customers(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("CPO_HOME", "DAGSTER_HOME", "CPO_CAMPAIGN", "CPO_EXECUTOR")}
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env["TMPDIR"] = str(scratch)  # where the benchmark makes (and removes) its campaign folders
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--customers", "250", "--startup-repeats", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    output = completed.stdout
    assert "## Start-up on its own" in output
    assert "| import dagster |" in output
    assert "## N = 250 customers: stages of `cpo run`" in output
    for stage in ("customers", "assignments", "personalized_messages", "experiment_results", "interpreter exit"):
        assert f"| {stage}" in output or f"|   {stage}" in output, stage
    summary = output.split("## Summary", 1)[1]
    assert "| 250 |" in summary
    assert not list(scratch.iterdir())  # its temporary campaign folders are removed
