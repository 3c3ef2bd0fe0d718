"""Personalization benchmark: true and estimated policy values on a SIMULATED campaign, the time
the modelling adds to a wave, and the estimator's coverage and false-pass rate in simulation.

Run from the repository root:

    .venv/bin/python benchmarks/personalization.py                      # 200,000 customers, 500 replicates
    .venv/bin/python benchmarks/personalization.py --customers 50000 --replicates 100

1. Campaign: `cpo generate-data --rollout --customers N` writes the sample campaign with a test on
   20% of each segment, the personalized rollout and simulated effects that vary with age inside
   segments (`campaign/sample_data.ROLLOUT_EXAMPLE`); `cpo run` runs it in a temporary CPO_HOME (content,
   the test wave, the rollout). The policies' values (estimate, interval, the simulator's true
   value for the same customers and picks), the rollout's realized lift and each step's wall time
   (from the run's Dagster event log) are read back and printed.
2. Simulations on 4,000-customer tests (1,000 per arm) drawn from 40,000 generated customers:
   coverage of every policy's true value by its interval with heterogeneous effects, and how often
   the personalized gate passes without heterogeneity (it must be at most alpha, 0.05).

Every engagement number here is simulated. Nothing is asserted; the tests assert the same
properties on fewer replicates (personalization_assets_tests/experiment/test_policies.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CPO = [sys.executable, "-m", "personalization_assets.cli"]
WAVE = "2026-11-23"
MODELLING_STEP = "policy_evaluation"


def campaign(customers: int) -> None:
    import dagster as dg
    import duckdb

    with tempfile.TemporaryDirectory(prefix="cpo-personalization-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "CPO_HOME": str(root / "home"), "DAGSTER_HOME": str(root / "home" / "dagster")}
        env.pop("CPO_CAMPAIGN", None)
        subprocess.run([*CPO, "generate-data", "--out", str(root / "data"), "--customers", str(customers), "--rollout"],
                       check=True, env=env, capture_output=True)
        started = time.perf_counter()
        run = subprocess.run([*CPO, "run", "--campaign", str(root / "data" / "campaign.yaml"), "--wave", WAVE], env=env,
                             capture_output=True, text=True)
        wall = time.perf_counter() - started
        if run.returncode:
            sys.exit(f"cpo run failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
        with duckdb.connect(str(root / "home" / "warehouse.duckdb"), read_only=True) as connection:
            values = connection.execute("SELECT * FROM personalization.policy_values").df()
            realized = connection.execute("SELECT * FROM personalization.rollout_results WHERE scope = 'overall' "
                                          "AND metric = 'open_rate' AND arm = 'rollout'").df()
            sent = connection.execute("SELECT policy, rollout_group, count(*) FILTER (WHERE sent) AS sent FROM "
                                      "personalization.rollout_assignments GROUP BY ALL ORDER BY ALL").df()
            test_size = connection.execute("SELECT count(*) FROM personalization.assignments").fetchone()[0]
        os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
        with dg.DagsterInstance.get() as instance:
            steps, runs = {}, {}
            for record in instance.get_run_records():
                stats = instance.get_run_stats(record.dagster_run.run_id)
                runs[record.dagster_run.job_name] = (stats.end_time or 0) - (stats.start_time or 0)
                for stat in instance.get_run_step_stats(record.dagster_run.run_id):
                    if stat.start_time and stat.end_time:
                        steps[stat.step_key] = stat.end_time - stat.start_time
        lines = run.stdout.splitlines()
        rollout_line = next((line for line in lines if line.startswith("rollout by")), "")
        printed = lines[next((i for i, line in enumerate(lines) if line.startswith("rollout run")), len(lines)):]

    print(f"== SIMULATED campaign: {customers:,} customers, test {test_size:,} (20% of each segment), wave {WAVE}")
    print(f"{'policy':<20}{'true value':>12}{'estimate':>10}   {'95% interval':<20}{'gain vs best other (pts)':>30}")
    for r in values.itertuples():
        gain = "baseline" if r.is_baseline else (
            f"{r.diff_vs_baseline * 100:+.2f} [{r.diff_ci_low * 100:+.2f}, {r.diff_ci_high * 100:+.2f}]")
        print(f"{r.policy:<20}{r.true_value:>12.2%}{r.value:>10.2%}   [{r.ci_low:.2%}, {r.ci_high:.2%}]{gain:>30}")
    print(f"valued on {int(values['customers'].iloc[0]):,} test customers (the evaluation part); {rollout_line}")
    if len(realized):
        r = realized.iloc[0]
        print(f"realized open-rate lift of the rollout over its holdout: {r.rel_lift:+.1%} [{r.rel_lift_ci_low:+.1%}, {r.rel_lift_ci_high:+.1%}]")
    print(f"sent by group: {', '.join(f'{r.rollout_group} {r.sent:,}' for r in sent.itertuples())}")
    print(f"`cpo run` wall time (content, test wave, rollout; fresh home): {wall:.1f} s; runs: "
          + ", ".join(f"{job} {seconds:.1f} s" for job, seconds in runs.items()))
    for step in sorted(steps, key=steps.get, reverse=True)[:8]:
        print(f"  step {step:<28}{steps[step]:>7.2f} s{'   <- the modelling a wave adds' if step == MODELLING_STEP else ''}")
    print("what `cpo run` printed for the rollout:\n" + "\n".join(printed).replace(str(root), "<tmp>"))


def simulations(replicates: int) -> None:
    sys.path.insert(0, str(REPO))
    from personalization_assets_tests.experiment.test_policies import (
        HETEROGENEITY,
        POLICIES,
        config_with,
        evaluate,
        simulated,
        true_values,
    )

    started = time.perf_counter()
    config = config_with(HETEROGENEITY)
    covered = {policy: 0 for policy in POLICIES}
    passed_with = 0
    for replicate in range(replicates):
        frame = simulated(config, 4_000, replicate)
        evaluation, _ = evaluate(frame, config, seed=replicate, folds=2)
        truth = true_values(frame, config, evaluation)
        table = evaluation.values.set_index("policy")
        for policy in POLICIES:
            covered[policy] += bool(table.loc[policy, "ci_low"] <= truth[policy] <= table.loc[policy, "ci_high"])
        passed_with += evaluation.gate.passed
    null = config_with()
    passed_without = sum(evaluate(simulated(null, 4_000, replicate), null, seed=replicate, folds=2)[0].gate.passed
                         for replicate in range(replicates))
    se = lambda p: 1.96 * np.sqrt(p * (1 - p) / replicates)  # noqa: E731
    print(f"\n== simulations: {replicates} replicates of 4,000 customers (1,000 per arm), logistic T-learner, "
          f"{time.perf_counter() - started:.0f} s")
    for policy in POLICIES:
        rate = covered[policy] / replicates
        print(f"coverage of the true value, {policy:<20} {rate:.3f} ± {se(rate):.3f} (nominal 0.95)")
    rate = passed_without / replicates
    print(f"personalized gate passes without heterogeneity: {rate:.3f} ± {se(rate):.3f} (must be <= alpha 0.05)")
    rate = passed_with / replicates
    print(f"personalized gate passes with heterogeneity (power at this size): {rate:.3f} ± {se(rate):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--replicates", type=int, default=500, help="simulation replicates (0: the campaign only)")
    args = parser.parse_args()
    campaign(args.customers)
    if args.replicates:
        simulations(args.replicates)


if __name__ == "__main__":
    main()
