"""The same assets beyond one machine: a 100,000-customer campaign run by `cpo run` on Dagster's Celery
executor, with Redis as the broker, two `dagster-celery` worker processes, the Dagster instance on
PostgreSQL (deploy/dagster.yaml) and the shared PostgreSQL warehouse, gives every warehouse table
equal to the in-process run of the same campaign on the embedded DuckDB warehouse.

Redis and PostgreSQL are started here, on 127.0.0.1 and ephemeral ports, with their data in a
temporary folder, and stopped at the end, as are the workers. Without the servers' binaries the
test skips locally; `.ci/run` sets CPO_REQUIRE_SERVICES_TEST=1, so in CI it fails instead.
"""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from personalization_assets.warehouse import DuckDBWarehouse
from personalization_assets.warehouse.postgres import PostgresWarehouse
from personalization_assets_tests.services import (
    celery_workers,
    clean_environment,
    distributed_deployment,
    require_binaries,
)

pytestmark = pytest.mark.e2e
CUSTOMERS = 100_000
WAVE = "2026-01-05"  # the generated campaign's first wave


def _cpo(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "personalization_assets.cli", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=1200)


def _tables(reader) -> dict[str, pd.DataFrame]:
    """Every table, its rows in a stable order (a table's row order is not part of its contents)."""
    tables = {}
    with reader as connection:
        names = [row[0] for row in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'personalization' ORDER BY 1").fetchall()]
        for name in names:
            frame = connection.execute(f"SELECT * FROM personalization.{name}").df()
            tables[name] = frame.sort_values(list(frame.columns), kind="stable", na_position="first").reset_index(drop=True)
    return tables


def test_a_100k_wave_on_two_celery_workers_equals_the_in_process_run(tmp_path):
    require_binaries("redis-server", "initdb", "pg_ctl", "postgres")
    data = tmp_path / "campaign"
    base = clean_environment()
    generated = _cpo("generate-data", "--customers", str(CUSTOMERS), "--out", str(data), env=base, cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr
    campaign = data / "campaign.yaml"
    common = {**base, "CPO_CAMPAIGN": str(campaign)}

    local_home = tmp_path / "in-process"
    local = _cpo("run", "--campaign", str(campaign), "--wave", WAVE, env={**common, "CPO_HOME": str(local_home)}, cwd=tmp_path)
    assert local.returncode == 0, local.stdout + local.stderr

    with distributed_deployment(tmp_path, common) as (server, shared):
        with celery_workers(2, shared, tmp_path / "workers") as worker_logs:
            distributed = _cpo("run", "--campaign", str(campaign), "--wave", WAVE, env=shared, cwd=tmp_path)
        logs = "".join(log.read_text() for log in worker_logs)
        assert distributed.returncode == 0, distributed.stdout + distributed.stderr + logs[-5000:]
        # The steps ran on the workers, both of them, as the shared instance's event log records.
        import psycopg2

        with psycopg2.connect(server.url("dagster")) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT event FROM event_logs WHERE event LIKE %s", ["%in celery worker%"])
            events = [row[0] for row in cursor.fetchall()]
        assert events and all(any(f"{name}@" in event for event in events) for name in ("cpo-worker-1", "cpo-worker-2"))

        # The readers outside the assets, on the shared warehouse: the audit trail's comparison with
        # the warehouse, and the review of the variants.
        audit = _cpo("audit", "verify", env=shared, cwd=tmp_path)
        assert audit.returncode == 0 and "equal what was sealed" in audit.stdout, audit.stdout + audit.stderr
        review = _cpo("review", "--all", "--campaign", str(campaign), env=shared, cwd=tmp_path)
        assert review.returncode == 0 and "friendly" in review.stdout, review.stdout + review.stderr

        expected = _tables(DuckDBWarehouse(local_home / "warehouse.duckdb").reader())
        actual = _tables(PostgresWarehouse(server.url("warehouse")).reader())
    assert sorted(actual) == sorted(expected)
    assert len(expected["assignments"]) == CUSTOMERS
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(actual[name], frame, check_exact=True, obj=name)
