"""Whole-wave scale benchmark: wall time per stage, peak memory and rows per second, per N.

Run from the repository root:

    .venv/bin/python benchmarks/wave_scale.py                          # N = 250, 10k, 100k, 1M
    .venv/bin/python benchmarks/wave_scale.py --customers 1000000      # one size
    CPO_EXECUTOR=multiprocess .venv/bin/python benchmarks/wave_scale.py --customers 1000000

For each N, in a fresh temporary folder:

1. `cpo generate-data --customers N` writes the campaign with the project's own generator (its own
   subprocess; not part of the wave's time or memory);
2. a fresh interpreter runs `cpo run` itself (`personalization_assets.cli.main(["run", ...])`:
   the `Session` code path, the content job then the wave job, the printed summary), with
   `CPO_HOME` and `DAGSTER_HOME` inside the temporary folder;
3. the per-stage times are read back from that Dagster instance's event log (STEP_START,
   LOADED_INPUT, STEP_OUTPUT, HANDLED_OUTPUT, STEP_SUCCESS timestamps of each step).

Peak memory is the child's peak resident set size as the kernel reports it to its parent
(`os.wait4`), which is the largest single process (with the multiprocess executor, a step's own
process); the sum over the process tree, sampled every 50 ms, is printed next to it. Interpreter,
`import dagster` and code-location start-up are measured on their own (median of several fresh
interpreters). Nothing here is asserted: the numbers are measurements (docs/performance.md).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = (250, 10_000, 100_000, 1_000_000)
DEFAULT_WAVE = "2026-11-23"
STARTUP_PROBES = {
    "interpreter (python -c pass)": "pass",
    "import dagster": "import dagster",
    "import pandas + duckdb": "import pandas, duckdb",
    "load the code location (definitions)": "import personalization_assets.definitions",
}


# --- the child: one `cpo run` in a fresh interpreter ---------------------------------------------


def child(args: argparse.Namespace) -> int:
    """Run `cpo run` exactly as the command line does, then write the stage times as JSON."""
    entered = time.time()
    # (wall clock, this process's CPU seconds) every 50 ms: the CPU each stage used, read off
    # between its timestamps. On a busy machine wall time stretches; CPU time much less.
    cpu_samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample_cpu() -> None:
        while True:
            times = os.times()
            cpu_samples.append((time.time(), times.user + times.system))
            if stop.wait(0.05):
                break

    sampler = threading.Thread(target=sample_cpu, daemon=True)
    sampler.start()
    from personalization_assets.cli import commands as cli

    code = cli.main(["run", "--campaign", args.campaign, "--wave", args.wave])
    returned = time.time()
    stop.set()
    sampler.join()
    stages = stage_times(os.environ["DAGSTER_HOME"])
    import resource

    result = {
        "exit_code": code,
        "executor": os.environ.get("CPO_EXECUTOR", "in_process") or "in_process",
        "entered": entered,
        "returned": returned,
        "self_peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "cpu_samples": cpu_samples,
        **stages,
    }
    Path(args.result).write_text(json.dumps(result))
    return code


def stage_times(dagster_home: str) -> dict:
    """Per-run and per-step timings from the instance's event log."""
    import dagster as dg
    from dagster import DagsterEventType

    instance = dg.DagsterInstance.from_config(dagster_home)
    runs = {}
    for run in instance.get_runs():
        records = instance.all_logs(run.run_id)
        steps: dict[str, dict[str, list[float]]] = {}
        for record in records:
            if record.dagster_event is None or record.step_key is None:
                continue
            kind = record.dagster_event.event_type
            steps.setdefault(record.step_key, {}).setdefault(kind.value, []).append(record.timestamp)
        timeline = [r.timestamp for r in records]
        step_rows = {}
        for key, events in steps.items():
            start = min(events[DagsterEventType.STEP_START.value])
            end = max(events.get(DagsterEventType.STEP_SUCCESS.value, events.get(DagsterEventType.STEP_FAILURE.value, [start])))
            loaded = max(
                events.get(DagsterEventType.LOADED_INPUT.value, []) + events.get(DagsterEventType.STEP_INPUT.value, []),
                default=start,
            )
            output = min(events.get(DagsterEventType.STEP_OUTPUT.value, [end]))
            stored = max(events.get(DagsterEventType.HANDLED_OUTPUT.value, [output]))
            step_rows[key] = {
                "start": start,
                "wall": end - start,
                "load_inputs": loaded - start,
                "compute": output - loaded,
                "store_output": stored - output,
            }
        runs[run.job_name] = {"run_id": run.run_id, "first_event": min(timeline), "last_event": max(timeline), "steps": step_rows}
    return {"runs": runs}


# --- the parent: data, fresh child per N, tables ---------------------------------------------------


def _python(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return time.perf_counter() - start


def measure_startup(repeats: int) -> dict[str, float]:
    return {label: statistics.median(_python(code) for _ in range(repeats)) for label, code in STARTUP_PROBES.items()}


def _tree_pss_kib(root: int) -> int:
    """Proportional set size of `root` and its descendants, from /proc (Linux): pages shared
    between processes (a fork, the multiprocess executor) are split between them, not counted twice."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                total += next((int(line.split()[1]) for line in handle if line.startswith("Pss:")), 0)
        except OSError:
            continue
    return total


def run_size(n: int, args: argparse.Namespace, workdir: Path) -> dict:
    data, home = workdir / "data", workdir / "home"
    generated_at = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "personalization_assets.cli", "generate-data", "--out", str(data), "--customers", str(n)],
        check=True, cwd=REPO, stdout=subprocess.DEVNULL,
    )
    generate_seconds = time.perf_counter() - generated_at  # the folder carries its own prompts
    result_path = workdir / "result.json"
    log_path = workdir / "cpo_run.log"
    env = {**os.environ, "CPO_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--campaign", str(data / "campaign.yaml"),
               "--wave", args.wave, "--result", str(result_path)]
    load_before = os.getloadavg()[0]
    with open(log_path, "w") as log:
        spawned = time.time()
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        tree_peak = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                tree_peak[0] = max(tree_peak[0], _tree_pss_kib(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        exited = time.time()
        done.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    output = log_path.read_text()
    if process.returncode != 0 or not result_path.is_file():
        raise SystemExit(f"cpo run failed for N={n} (exit {process.returncode}):\n{output[-4000:]}")
    child_result = json.loads(result_path.read_text())
    return {
        "n": n,
        "generate_seconds": generate_seconds,
        "spawned": spawned,
        "exited": exited,
        "peak_rss_kib": usage.ru_maxrss,
        "tree_peak_rss_kib": tree_peak[0],
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "load": (load_before, os.getloadavg()[0]),
        "output": output,
        **child_result,
    }


def stage_table(result: dict) -> list[tuple[str, float, float | None, str]]:
    """(stage, wall seconds, CPU seconds, detail) rows that add up to the child's wall time.

    Steps run one after another (in-process executor), so a step's CPU is the child's CPU between
    the step's first and last event. With the multiprocess executor a step runs in another
    process, which this sampler does not see: its CPU column is left empty.
    """
    runs = result["runs"]
    content, wave = runs["campaign_content"], runs["campaign_wave"]
    samples = result["cpu_samples"]
    sample_times, sample_cpu = [t for t, _ in samples], [c for _, c in samples]

    def cpu(start: float, end: float) -> float:
        def at(moment: float) -> float:  # linear interpolation between samples
            index = bisect.bisect_left(sample_times, moment)
            if index <= 0:
                return sample_cpu[0]
            if index >= len(sample_times):
                return sample_cpu[-1]
            t0, t1 = sample_times[index - 1], sample_times[index]
            c0, c1 = sample_cpu[index - 1], sample_cpu[index]
            return c0 + (c1 - c0) * (moment - t0) / (t1 - t0) if t1 > t0 else c1

        return at(end) - at(start)

    in_process = result.get("executor", "in_process") == "in_process"
    rows: list[tuple[str, float, float | None, str]] = [
        ("interpreter start-up", result["entered"] - result["spawned"], None, ""),
        ("imports, definitions, instance", content["first_event"] - result["entered"], cpu(result["entered"], content["first_event"]), ""),
    ]
    for label, run in (("content run", content), ("wave run", wave)):
        run_wall = run["last_event"] - run["first_event"]
        step_sum = step_cpu = 0.0
        # Every step of the run, in the order it started (the graph may grow; none is left out).
        for step, timing in sorted(run["steps"].items(), key=lambda item: item[1]["start"]):
            step_sum += timing["wall"]
            used = cpu(timing["start"], timing["start"] + timing["wall"]) if in_process else None
            step_cpu += used or 0.0
            detail = f"load {timing['load_inputs']:.2f} / compute {timing['compute']:.2f} / store {timing['store_output']:.2f}"
            if in_process:
                loaded = timing["start"] + timing["load_inputs"]
                computed = loaded + timing["compute"]
                stored = computed + timing["store_output"]
                detail += (f" (CPU {cpu(timing['start'], loaded):.2f} / {cpu(loaded, computed):.2f} / "
                           f"{cpu(computed, stored):.2f})")
            rows.append((f"  {step}", timing["wall"], used, detail))
        overhead_cpu = cpu(run["first_event"], run["last_event"]) - step_cpu if in_process else None
        rows.append((f"  {label}: Dagster overhead (run wall - steps)", run_wall - step_sum, overhead_cpu, f"run wall {run_wall:.2f}"))
    between_start = content["last_event"]
    between = result["returned"] - between_start - (wave["last_event"] - wave["first_event"])
    rows.append(("between and after the runs (CLI output, summary query)", between,
                 cpu(between_start, wave["first_event"]) + cpu(wave["last_event"], result["returned"]), ""))
    rows.append(("interpreter exit", result["exited"] - result["returned"], None, ""))
    return rows


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def print_report(startup: dict[str, float], results: list[dict], executor: str) -> None:
    print(f"\n## Start-up on its own (median of fresh interpreters; {sys.executable})\n")
    print("| what | seconds |\n|---|---:|")
    for label, seconds in startup.items():
        print(f"| {label} | {seconds:.2f} |")
    for result in results:
        print(f"\n## N = {result['n']:,} customers: stages of `cpo run` (executor: {executor})\n")
        print(f"(customers generated in {result['generate_seconds']:.1f} s beforehand, in their own process: not part of the run)\n")
        print("| stage | wall (s) | CPU (s) | load inputs / compute / store output: wall (CPU) |\n|---|---:|---:|---|")
        for stage, seconds, cpu_seconds, detail in stage_table(result):
            print(f"| {stage} | {seconds:.2f} | {'' if cpu_seconds is None else f'{cpu_seconds:.2f}'} | {detail} |")
    print(f"\n## Summary (executor: {executor}; {os.cpu_count()} CPUs)\n")
    print("| customers | cpo run wall (s) | content run (s) | wave run (s) | CPU (s) | peak RSS | peak RSS, process tree (sampled) "
          "| customers/s (whole cpo run) | customers/s (wave run) | load avg before/after |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for result in results:
        wall = result["exited"] - result["spawned"]
        content, wave = result["runs"]["campaign_content"], result["runs"]["campaign_wave"]
        wave_wall = wave["last_event"] - wave["first_event"]
        print(
            f"| {result['n']:,} | {wall:.2f} | {content['last_event'] - content['first_event']:.2f} | {wave_wall:.2f} | "
            f"{result['cpu_seconds']:.1f} | {_mib(result['peak_rss_kib'])} | {_mib(result['tree_peak_rss_kib'])} | "
            f"{result['n'] / wall:,.0f} | {result['n'] / wave_wall:,.0f} | {result['load'][0]:.1f} / {result['load'][1]:.1f} |"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=list(DEFAULT_SIZES), help="sizes to run (default: 250 10000 100000 1000000)")
    parser.add_argument("--wave", default=DEFAULT_WAVE, help=f"wave date (default {DEFAULT_WAVE})")
    parser.add_argument("--startup-repeats", type=int, default=5, help="fresh interpreters per start-up probe (0 skips them)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (data, warehouse, exports, report)")
    parser.add_argument("--show-output", action="store_true", help="print what each `cpo run` printed")
    # Internal: the fresh interpreter that runs `cpo run` once.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--campaign", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    executor = os.environ.get("CPO_EXECUTOR", "in_process")
    startup = measure_startup(args.startup_repeats) if args.startup_repeats > 0 else {}
    results = []
    for n in args.customers:
        workdir = Path(tempfile.mkdtemp(prefix=f"cpo_bench_{n}_"))
        try:
            result = run_size(n, args, workdir)
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        if args.show_output:
            print(result["output"])
        wall = result["exited"] - result["spawned"]
        print(f"N={n:,}: cpo run {wall:.2f} s, peak RSS {_mib(result['peak_rss_kib'])}" + (f" (kept in {workdir})" if args.keep else ""), flush=True)
        results.append(result)
    print_report(startup, results, executor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
