"""Warehouse writes are atomic per partition and typed: a failure, a kill, or a wave in which some
customers are held out after one in which nobody was never loses or half-writes a partition."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import dagster as dg
import duckdb
import pandas as pd
import pytest

from personalization_assets.defs.io_managers import WarehouseIOManager
from personalization_assets_tests.conftest import TEST_CUSTOMERS, TEST_WAVE
from personalization_assets_tests.defs.pipeline import materialize_wave, read_table

WAVES = dg.StaticPartitionsDefinition(["w1", "w2"])


def _people(wave: str, n: int, note: object = None) -> pd.DataFrame:
    return pd.DataFrame({"wave": wave, "customer_id": [f"{wave}-{i}" for i in range(n)], "n": range(n), "note": note})


def _materialize(database, wave: str, frame: pd.DataFrame, schema: dg.TableSchema | None = None) -> dg.ExecuteInProcessResult:
    metadata = {"partition_expr": "wave", **({"dagster/column_schema": schema} if schema else {})}

    @dg.asset(partitions_def=WAVES, metadata=metadata, key_prefix=["test"], name="people")
    def people() -> pd.DataFrame:
        return frame

    return dg.materialize([people], partition_key=wave, raise_on_error=False,
                          resources={"io_manager": WarehouseIOManager(database=str(database), schema="test")})


def _stored(database) -> pd.DataFrame:
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.execute("SELECT * FROM test.people ORDER BY wave, n").df()


def _column_types(database) -> dict[str, str]:
    with duckdb.connect(str(database), read_only=True) as connection:
        rows = connection.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'people'").fetchall()
    return dict(rows)


def test_an_all_missing_text_column_is_stored_as_text_and_later_text_fits(tmp_path):
    database = tmp_path / "w.duckdb"
    assert _materialize(database, "w1", _people("w1", 3)).success  # every note missing
    assert _column_types(database)["note"] == "VARCHAR"
    assert _materialize(database, "w2", _people("w2", 2, note="held out: variant blocked")).success
    assert _stored(database)["note"].tolist() == [None, None, None, "held out: variant blocked", "held out: variant blocked"]


def test_declared_column_types_are_the_stored_types(tmp_path):
    database = tmp_path / "w.duckdb"
    schema = dg.TableSchema(columns=[dg.TableColumn("n", "float64"), dg.TableColumn("note", "object")])
    assert _materialize(database, "w1", _people("w1", 3), schema).success  # n holds whole numbers, note nothing
    assert _column_types(database)["n"] == "DOUBLE" and _column_types(database)["note"] == "VARCHAR"


def test_a_table_from_an_earlier_version_gains_new_columns_and_rows_go_in_by_name(tmp_path):
    database = tmp_path / "w.duckdb"
    with duckdb.connect(str(database)) as connection:
        connection.execute("CREATE SCHEMA test")
        # Stored with another column order and without `note`: a positional insert would mix them up.
        connection.execute("CREATE TABLE test.people AS SELECT 0::BIGINT AS n, 'w1-0' AS customer_id, 'w1' AS wave")
    assert _materialize(database, "w2", _people("w2", 2, note="new")).success
    stored = _stored(database).set_index("customer_id")
    assert stored.loc["w2-1", "n"] == 1 and stored.loc["w2-1", "wave"] == "w2" and stored.loc["w2-1", "note"] == "new"
    assert pd.isna(stored.loc["w1-0", "note"])


def test_a_table_an_earlier_version_stored_with_a_null_typed_column_is_repaired(tmp_path):
    database = tmp_path / "w.duckdb"
    with duckdb.connect(str(database)) as connection:
        connection.execute("CREATE SCHEMA test")
        connection.execute("CREATE TABLE test.people AS SELECT 'w1' AS wave, 'w1-0' AS customer_id, 0::BIGINT AS n, NULL AS note")
    assert _column_types(database)["note"] == '"NULL"'
    assert _materialize(database, "w2", _people("w2", 1, note="suppressed")).success
    assert _column_types(database)["note"] == "VARCHAR"
    assert _stored(database)[["wave", "note"]].values.tolist() == [["w1", None], ["w2", "suppressed"]]


def test_a_failed_write_leaves_the_partition_as_it_was(tmp_path):
    database = tmp_path / "w.duckdb"
    assert _materialize(database, "w1", _people("w1", 3)).success
    before = _stored(database)
    # A value the stored column cannot hold: the insert fails after the partition's delete ran.
    broken = _people("w1", 3).assign(n=["one", "two", "three"])
    result = _materialize(database, "w1", broken)
    assert not result.success
    pd.testing.assert_frame_equal(_stored(database), before)


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    import dagster as dg
    import pandas as pd
    from personalization_assets.defs import io_managers

    original = io_managers.TransactionalDuckDbClient.delete_table_slice

    def delete_then_stall(context, table_slice, connection):
        original(context, table_slice, connection)
        print("deleted", flush=True)  # the partition's old rows are gone inside the transaction
        time.sleep(120)

    io_managers.TransactionalDuckDbClient.delete_table_slice = staticmethod(delete_then_stall)

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["w1", "w2"]), metadata={"partition_expr": "wave"},
              key_prefix=["test"], name="people")
    def people() -> pd.DataFrame:
        return pd.DataFrame({"wave": "w1", "customer_id": ["new"], "n": [99], "note": ["new"]})

    dg.materialize([people], partition_key="w1",
                   resources={"io_manager": io_managers.WarehouseIOManager(database=sys.argv[1], schema="test")})
""")


def test_a_kill_inside_the_write_leaves_the_partition_as_it_was(tmp_path):
    database = tmp_path / "w.duckdb"
    assert _materialize(database, "w1", _people("w1", 3)).success
    assert _materialize(database, "w2", _people("w2", 2)).success
    before = _stored(database)
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(database)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "deleted"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    pd.testing.assert_frame_equal(_stored(database), before)


@pytest.mark.e2e
def test_a_wave_with_a_held_out_customer_after_a_clean_wave(materialized_copy):
    """The issue's sequence: a first wave in which every variant was approved (nobody held out),
    then a variant blocked (18 of 19 approved: the gate still passes) and the next waves run."""
    folder = materialized_copy
    folder.edit_campaign(paths__suppression=None)  # nobody suppressed: a wave in which nobody is held out
    defs = folder.definitions()
    assert materialize_wave(defs, dg.DagsterInstance.ephemeral(), TEST_WAVE).success
    assert read_table(folder.warehouse, "assignments")["hold_reason"].isna().all()
    with duckdb.connect(str(folder.warehouse)) as connection:
        connection.execute("UPDATE personalization.safety_verdicts SET decision = 'blocked' WHERE variant_id = 'at_risk:urgent'")
    for wave in ("2026-11-09", TEST_WAVE):  # a new wave, and the clean wave re-run in place
        assert materialize_wave(defs, dg.DagsterInstance.ephemeral(), wave).success, wave
    assignments = read_table(folder.warehouse, "assignments")
    assert assignments.groupby("wave").size().to_dict() == {"2026-11-09": TEST_CUSTOMERS, TEST_WAVE: TEST_CUSTOMERS}
    held = assignments[assignments["variant_id"] == "at_risk:urgent"]
    assert len(held) > 0 and not held["sent"].any() and held["hold_reason"].eq("variant_blocked").all()
    assert len(read_table(folder.warehouse, "personalized_messages", f"wave = '{TEST_WAVE}'")) == int(
        assignments.loc[assignments["wave"] == TEST_WAVE, "sent"].sum())
