"""The Dagster daemon against the shared instance on PostgreSQL (deploy/dagster.yaml), with the
Celery executor and one worker: with the schedule and the engagement sensor turned on by Dagster's
own CLI, the daemon records its heartbeats there; when a wave's ESP export lands, the sensor's run
(queued, then launched by the daemon, its steps on the worker) re-analyses the wave into the shared
PostgreSQL warehouse; and a backfill of two segments' content becomes one run per segment.

PostgreSQL and Redis are started on 127.0.0.1 and ephemeral ports for the test and stopped by it,
as are the daemon and the worker. Skips without the servers' binaries, except under
CPO_REQUIRE_SERVICES_TEST=1 (CI).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets.warehouse.postgres import PostgresWarehouse
from personalization_assets_tests.services import (
    celery_workers,
    clean_environment,
    distributed_deployment,
    require_binaries,
)

pytestmark = pytest.mark.e2e
WAVE = "2026-01-05"  # the generated campaign's first wave


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


def test_the_daemon_runs_the_sensor_and_schedule_against_the_postgres_instance(tmp_path, monkeypatch):
    require_binaries("redis-server", "initdb", "pg_ctl", "postgres")
    bin_dir = Path(sys.executable).parent
    base = clean_environment()
    cli = [sys.executable, "-m", "personalization_assets.cli"]
    _run([*cli, "generate-data", "--customers", "2000", "--out", str(tmp_path / "campaign")], base, tmp_path)
    campaign = tmp_path / "campaign" / "campaign.yaml"
    with distributed_deployment(tmp_path, {**base, "CPO_CAMPAIGN": str(campaign)}) as (server, env), \
            celery_workers(1, env, tmp_path / "workers"):
        _run([*cli, "run", "--campaign", str(campaign), "--wave", WAVE], env, tmp_path)
        workspace = ["-w", str(PROJECT_ROOT / "workspace.yaml")]
        _run([str(bin_dir / "dagster"), "sensor", "start", "engagement_file_sensor", *workspace], env, PROJECT_ROOT)
        _run([str(bin_dir / "dagster"), "schedule", "start", "weekly_campaign_wave", *workspace], env, PROJECT_ROOT)
        segments = ["vip_champions", "at_risk"]
        _run([str(bin_dir / "dagster"), "job", "backfill", "-j", "campaign_content", "--partitions", ",".join(segments), "--noprompt",
              *workspace], env, PROJECT_ROOT)

        # The wave's ESP export lands: every sent customer, opens unlike the simulation's.
        with PostgresWarehouse(server.url("warehouse")).reader(["assignments"], wave=WAVE) as connection:
            sent = connection.execute("SELECT customer_id FROM personalization.assignments WHERE sent ORDER BY customer_id").df()
        export = sent.assign(opened=[i % 2 for i in range(len(sent))], clicked=0, converted=0)
        (tmp_path / "campaign" / "engagement").mkdir(exist_ok=True)
        export.to_csv(tmp_path / "campaign" / "engagement" / f"{WAVE}.csv", index=False)

        log = (tmp_path / "daemon.log").open("w")
        daemon = subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", *workspace], env=env, cwd=PROJECT_ROOT, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            import dagster as dg

            instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
            deadline = time.monotonic() + 400
            run, backfilled = None, []
            while time.monotonic() < deadline:
                runs = instance.get_runs(filters=dg.RunsFilter(tags={"cpo/engagement_file": str(tmp_path / "campaign" / "engagement" /
                                                                                                   f"{WAVE}.csv")}))
                run = runs[0] if runs else None
                backfilled = [r for r in instance.get_runs() if "dagster/backfill" in r.tags]
                if run is not None and run.is_finished and len(backfilled) == len(segments) and all(r.is_finished for r in backfilled):
                    break
                time.sleep(2)
            heartbeats = set(instance.get_daemon_heartbeats())
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()
            log.close()
        daemon_log = (tmp_path / "daemon.log").read_text()[-4000:]
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS, daemon_log
        # The backfill of two segments: one run each (the Celery executor's backfill policy), both succeeded.
        assert sorted(r.tags.get("dagster/partition") for r in backfilled) == sorted(segments), daemon_log
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in backfilled), daemon_log
        assert {"SENSOR", "SCHEDULER", "QUEUED_RUN_COORDINATOR"} <= heartbeats, heartbeats
        schedule_state = [state for state in instance.all_instigator_state() if state.name == "weekly_campaign_wave"]
        from dagster._core.scheduler.instigation import InstigatorStatus

        assert schedule_state and schedule_state[0].status == InstigatorStatus.RUNNING
        with PostgresWarehouse(server.url("warehouse")).reader(["experiment_results", "engagement"], wave=WAVE) as connection:
            sources = connection.execute("SELECT DISTINCT engagement_source FROM personalization.experiment_results").df()
            imported = connection.execute("SELECT count(*) AS n FROM personalization.engagement WHERE in_export").df()
        assert sources["engagement_source"].tolist() == ["imported"]
        assert int(imported["n"].iloc[0]) == len(sent)
        instance.dispose()
