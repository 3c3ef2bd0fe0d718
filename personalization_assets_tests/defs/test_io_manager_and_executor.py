"""The warehouse IO manager (no re-reads within a run) and the executor switch (CPO_EXECUTOR)."""

from __future__ import annotations

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from personalization_assets.campaign.errors import ConfigError
from personalization_assets.cli.commands import Session
from personalization_assets.definitions import campaign_definitions, campaign_job
from personalization_assets.defs.io_managers import (
    WarehouseIOManager,
    _as_loaded,
    _RunCache,
)
from personalization_assets.defs.jobs import WAVE_JOB, executor_def, executor_name

# --- the IO manager --------------------------------------------------------------------------------


class Spy(dg.IOManager):
    def __init__(self):
        self.stored, self.loads = [], 0

    def handle_output(self, context, obj):
        self.stored.append(obj)

    def load_input(self, context):
        self.loads += 1
        return "from the warehouse"


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"customer_id": ["a", "b", "c"], "note": ["x", np.nan, None], "n": [1, 2, 3], "ok": [True, False, True]},
        index=[5, 6, 7],
    )


def test_a_run_reads_back_what_it_stored_without_the_warehouse():
    spy = Spy()
    cache = _RunCache(spy)
    cache.handle_output(dg.build_output_context(asset_key="people"), frame())
    loaded = cache.load_input(dg.build_input_context(asset_key="people", definition_metadata={"columns": ["customer_id", "note"]}))
    assert spy.loads == 0 and len(spy.stored) == 1
    assert list(loaded.columns) == ["customer_id", "note"]
    assert loaded.index.equals(pd.RangeIndex(3))
    assert loaded["note"].tolist() == ["x", None, None]  # as DuckDB returns a NULL VARCHAR

    loaded["customer_id"] = "changed"  # a reader's changes stay its own
    again = cache.load_input(dg.build_input_context(asset_key="people"))
    assert again["customer_id"].tolist() == ["a", "b", "c"]


def test_other_assets_partitions_and_columns_go_to_the_warehouse():
    spy = Spy()
    cache = _RunCache(spy)
    partitions = dg.StaticPartitionsDefinition(["w1", "w2"])
    cache.handle_output(dg.build_output_context(asset_key="people", partition_key="w1", asset_partitions_def=partitions), frame())
    assert cache.load_input(dg.build_input_context(asset_key="other")) == "from the warehouse"
    assert cache.load_input(dg.build_input_context(asset_key="people", partition_key="w2", asset_partitions_def=partitions)) == "from the warehouse"
    unknown = dg.build_input_context(asset_key="people", partition_key="w1", asset_partitions_def=partitions, definition_metadata={"columns": ["nope"]})
    assert cache.load_input(unknown) == "from the warehouse"
    assert spy.loads == 3
    same = dg.build_input_context(asset_key="people", partition_key="w1", asset_partitions_def=partitions)
    assert len(cache.load_input(same)) == 3 and spy.loads == 3


def test_frames_duckdb_would_change_are_not_kept():
    assert _as_loaded(frame().assign(kind=pd.Categorical(["x", "y", "x"]))) is None
    assert _as_loaded(frame().assign(when=pd.Timestamp("2026-01-05"))) is None
    assert _as_loaded(frame().iloc[:0]) is None
    assert _as_loaded(frame().assign(n=pd.array([1, None, 3], dtype="Int64"))) is None


def test_in_memory_frames_equal_what_the_warehouse_returns(tmp_path):
    database = tmp_path / "warehouse.duckdb"

    @dg.asset
    def people() -> pd.DataFrame:
        return frame()

    seen = {}

    @dg.asset(ins={"people": dg.AssetIn(metadata={"columns": ["customer_id", "note", "n"]})})
    def summary(people: pd.DataFrame) -> pd.DataFrame:
        seen["people"] = people
        return people.assign(length=people["customer_id"].str.len())

    result = dg.materialize([people, summary], resources={"io_manager": WarehouseIOManager(database=str(database), schema="test")})
    assert result.success
    with duckdb.connect(str(database), read_only=True) as connection:
        stored = connection.execute("SELECT customer_id, note, n FROM test.people").df()
        assert len(connection.execute("SELECT * FROM test.summary").df()) == 3
    pd.testing.assert_frame_equal(seen["people"], stored)


# --- the executor switch ---------------------------------------------------------------------------


def test_in_process_by_default():
    assert executor_name({}) == "in_process"
    assert executor_def({}) is dg.in_process_executor
    assert executor_def({"CPO_EXECUTOR": "in_process"}) is dg.in_process_executor


def test_multiprocess_switch():
    executor = executor_def({"CPO_EXECUTOR": "multiprocess", "CPO_MAX_CONCURRENT": "2"})
    assert executor.name == "multiprocess"


@pytest.mark.parametrize("environ", [{"CPO_EXECUTOR": "celery"}, {"CPO_EXECUTOR": "multiprocess", "CPO_MAX_CONCURRENT": "two"}])
def test_unknown_executor_settings_are_config_errors(environ):
    with pytest.raises(ConfigError):
        executor_def(environ)


def test_jobs_use_the_configured_executor(campaign_folder, monkeypatch):
    defs = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    assert defs.resolve_job_def(WAVE_JOB).executor_def.name == "in_process"
    monkeypatch.setenv("CPO_EXECUTOR", "multiprocess")
    assert campaign_job(WAVE_JOB, str(campaign_folder.campaign)).executor_def.name == "multiprocess"


def test_cli_launches_a_reconstructable_job_with_the_multiprocess_executor(campaign_folder, monkeypatch):
    launched = {}

    class Result:
        def __enter__(self):
            return "result"

        def __exit__(self, *exc):
            return False

    def fake_execute_job(job, instance, run_config, tags, raise_on_error):
        launched.update(job=job, tags=tags, raise_on_error=raise_on_error)
        return Result()

    monkeypatch.setattr(dg, "execute_job", fake_execute_job)
    monkeypatch.setenv("CPO_EXECUTOR", "multiprocess")
    session = Session.open(str(campaign_folder.campaign), verbose=False)
    assert session.execute(WAVE_JOB, partition_key="2026-11-16") == "result"
    assert launched["tags"] == {"dagster/partition": "2026-11-16"}
    assert launched["raise_on_error"] is False
    pointer = launched["job"].get_python_origin()
    assert pointer.job_name == WAVE_JOB
