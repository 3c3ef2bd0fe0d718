"""One wave in-process on the embedded DuckDB warehouse, and the same wave on Dagster's Celery
executor with two workers, the instance and the warehouse on PostgreSQL, on this machine.

Run from the repository root (needs redis-server and PostgreSQL's server programs, from Debian's
packages `redis-server` and `postgresql`):

    .venv/bin/python benchmarks/distributed.py                      # 1,000,000 customers
    .venv/bin/python benchmarks/distributed.py --customers 100000

For each setup: `cpo run` (the content run, then the wave run) of a generated campaign of SIMULATED
customers, from a fresh CPO_HOME, timed whole (wall clock, including process start), and each
step's time as the Dagster instance recorded it (start to end of the step, on whichever process
ran it). Redis and PostgreSQL run on 127.0.0.1 and ephemeral ports, data in a temporary folder,
started and stopped here (fsync off: test data). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from personalization_assets_tests.services import (  # noqa: E402
    celery_workers,
    clean_environment,
    distributed_deployment,
)

WAVE = "2026-01-05"  # the generated campaign's first wave


def cpo(*args: str, env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "personalization_assets.cli", *args], env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"cpo {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def step_times(dagster_home: Path, env: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Each step's (start, end), in seconds from the start of the first run, over the runs of the
    instance at `dagster_home` (opened with the environment `env`)."""
    code = (
        "import json, sys, dagster as dg\n"
        "instance = dg.DagsterInstance.from_config(sys.argv[1])\n"
        "times = {}\n"
        "for run in instance.get_runs():\n"
        "    for stat in instance.get_run_step_stats(run.run_id):\n"
        "        if stat.start_time and stat.end_time:\n"
        "            times[stat.step_key] = (stat.start_time, stat.end_time)\n"
        "print(json.dumps(times))\n"
    )
    import json

    done = subprocess.run([sys.executable, "-c", code, str(dagster_home)], env=env, capture_output=True, text=True, check=True)
    times = json.loads(done.stdout)
    first = min(start for start, _ in times.values())
    return {step: (start - first, end - first) for step, (start, end) in times.items()}


def busy(times: dict[str, tuple[float, float]]) -> float:
    return sum(end - start for start, end in times.values())


def beside(times: dict[str, tuple[float, float]], step: str) -> str:
    """The steps that ran at the same time as `step`, for at least a tenth of a second."""
    start, end = times[step]
    return ", ".join(sorted(other for other, (s, e) in times.items() if other != step and min(end, e) - max(start, s) > 0.1)) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    base = clean_environment()
    with tempfile.TemporaryDirectory(prefix="cpo-distributed-") as scratch:
        folder = Path(scratch)
        cpo("generate-data", "--customers", str(args.customers), "--out", str(folder / "campaign"), env=base, cwd=folder)
        campaign = folder / "campaign" / "campaign.yaml"
        common = {**base, "CPO_CAMPAIGN": str(campaign)}

        local = {**common, "CPO_HOME": str(folder / "in-process")}
        local_wall = cpo("run", "--campaign", str(campaign), "--wave", WAVE, env=local, cwd=folder)
        local_steps = step_times(folder / "in-process" / "dagster", local)

        with distributed_deployment(folder, common) as (_, shared):
            with celery_workers(2, shared, folder / "workers"):
                time.sleep(3)  # the workers connect to the broker
                shared_wall = cpo("run", "--campaign", str(campaign), "--wave", WAVE, env=shared, cwd=folder)
            shared_steps = step_times(Path(shared["DAGSTER_HOME"]), shared)

    print(f"## One wave of {args.customers:,} SIMULATED customers, this 2-core machine\n")
    print("| setup | `cpo run` wall s | sum of step times s |\n|---|---:|---:|")
    print(f"| in-process, DuckDB warehouse | {local_wall:.1f} | {busy(local_steps):.1f} |")
    print(f"| Celery, 2 workers, PostgreSQL instance and warehouse | {shared_wall:.1f} | {busy(shared_steps):.1f} |")
    print("\n| step | in-process s | Celery s | ran beside it on the other worker (Celery) |\n|---|---:|---:|---|")
    for step in sorted(shared_steps, key=lambda key: shared_steps[key][0]):
        local_seconds = local_steps[step][1] - local_steps[step][0] if step in local_steps else float("nan")
        start, end = shared_steps[step]
        print(f"| {step} | {local_seconds:.2f} | {end - start:.2f} | {beside(shared_steps, step)} |")


if __name__ == "__main__":
    main()
