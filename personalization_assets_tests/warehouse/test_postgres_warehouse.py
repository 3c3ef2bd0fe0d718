"""The shared PostgreSQL warehouse against a real server on loopback (started and stopped here):
frames come back as the DuckDB warehouse gives them, a partition is replaced atomically, writers of
different partitions of a new table do not collide, and readers see DuckDB tables."""

import threading

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from personalization_assets.campaign.errors import ConfigError
from personalization_assets.defs.io_managers import PostgresWarehouseIOManager
from personalization_assets.warehouse import postgres
from personalization_assets.warehouse.postgres import PostgresWarehouse
from personalization_assets_tests.services import postgres_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with postgres_server(tmp_path_factory.mktemp("postgres"), databases=("cpo",)) as running:
        yield running


@pytest.fixture
def url(server, request):
    """A fresh database per test."""
    import psycopg2

    name = "t_" + request.node.name.lower().replace("[", "_").replace("]", "").replace("-", "_")[:50]
    admin = psycopg2.connect(server.url("postgres"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return server.url(name)


def _as_duckdb_returns(frame: pd.DataFrame) -> pd.DataFrame:
    with duckdb.connect() as connection:
        connection.register("obj", frame)
        return connection.execute("SELECT * FROM obj").df()


def test_a_frame_comes_back_as_the_duckdb_warehouse_gives_it(url):
    frame = pd.DataFrame({
        "wave": ["2026-11-16"] * 5,
        "customer_id": ["a", "", None, "\\N", 'q"uo,te'],  # empty and missing text stay apart, as does the NULL marker's text
        "x": [0.1, np.nan, 1e300, -0.0, 1 / 3],
        "n": np.array([1, 2, 3, -(2**62), 5], dtype="int64"),
        "flag": [True, False, True, False, True],
        "opened": np.array([0, 1, 1, 0, -128], dtype="int8"),
        "text": ['a,"b"\nc', "é ✓", None, "x", ""],
    })
    with postgres.transaction(url) as connection, connection.cursor() as cursor, duckdb.connect() as duck:
        postgres.ensure_schema(cursor)
        duck.register("obj", frame)
        postgres.store(cursor, "demo", duck, "SELECT * FROM obj")
    with postgres.transaction(url) as connection, connection.cursor() as cursor:
        back = postgres.fetch(cursor, "demo", "SELECT * FROM personalization.demo")
    pd.testing.assert_frame_equal(back, _as_duckdb_returns(frame), check_exact=True)
    with PostgresWarehouse(url).reader(["demo", "absent"]) as connection:
        assert connection.execute("SELECT typeof(opened), count(*) FROM personalization.demo GROUP BY 1").fetchall() == [("TINYINT", 5)]
        assert connection.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'absent'").fetchone() == (0,)


def test_a_type_it_cannot_store_is_refused_by_name(url):
    frame = pd.DataFrame({"wave": ["w"], "tags": [[1, 2]]})
    with postgres.transaction(url) as connection, connection.cursor() as cursor, duckdb.connect() as duck:
        postgres.ensure_schema(cursor)
        duck.register("obj", frame)
        with pytest.raises(ConfigError, match="column 'tags' has the type"):
            postgres.store(cursor, "demo", duck, "SELECT * FROM obj")


WAVES = dg.StaticPartitionsDefinition(["2026-11-09", "2026-11-16"])


def _materialize(url, asset, partition):
    return dg.materialize([asset], resources={"io_manager": PostgresWarehouseIOManager(url=url)}, partition_key=partition,
                          raise_on_error=False)


def _rows(url) -> pd.DataFrame:
    with PostgresWarehouse(url).reader(["scores"]) as connection:
        return connection.execute("SELECT * FROM personalization.scores ORDER BY wave, customer_id").df()


def test_the_io_manager_replaces_one_partition_and_a_failed_write_leaves_it_as_it_was(url):
    attempt = {"value": 1.0, "broken": False}

    @dg.asset(partitions_def=WAVES, metadata={"partition_expr": "wave"}, name="scores")
    def scores(context: dg.AssetExecutionContext) -> pd.DataFrame:
        frame = pd.DataFrame({"wave": context.partition_key, "customer_id": ["C1", "C2"], "score": attempt["value"]})
        # A column the warehouse cannot store makes the write fail after its delete, inside the transaction.
        return frame.assign(bad=[[1], [2]]) if attempt["broken"] else frame

    assert _materialize(url, scores, "2026-11-09").success and _materialize(url, scores, "2026-11-16").success
    attempt["value"] = 2.0
    assert _materialize(url, scores, "2026-11-16").success
    assert _rows(url)["score"].tolist() == [1.0, 1.0, 2.0, 2.0]
    attempt.update(value=3.0, broken=True)
    assert not _materialize(url, scores, "2026-11-16").success
    assert _rows(url)["score"].tolist() == [1.0, 1.0, 2.0, 2.0]  # the failed write's delete was rolled back


def test_writers_of_different_partitions_of_a_new_table_do_not_collide(url):
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def write(wave: str) -> None:
        try:
            frame = pd.DataFrame({"wave": wave, "customer_id": [f"C{i}" for i in range(1000)], "score": np.arange(1000.0)})
            with postgres.transaction(url) as connection, connection.cursor() as cursor, duckdb.connect() as duck:
                start.wait()
                postgres.ensure_schema(cursor)
                duck.register("obj", frame)
                postgres.store(cursor, "scores", duck, "SELECT * FROM obj")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"2026-11-{day:02d}",)) for day in (2, 9, 16, 23)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    counts = _rows(url).groupby("wave").size()
    assert counts.to_dict() == {"2026-11-02": 1000, "2026-11-09": 1000, "2026-11-16": 1000, "2026-11-23": 1000}


def test_two_runs_replacing_the_same_partition_at_once_leave_one_copy_of_its_rows(url):
    together: list[threading.Barrier] = []
    results = []

    @dg.asset(partitions_def=WAVES, metadata={"partition_expr": "wave"}, name="scores")
    def scores(context: dg.AssetExecutionContext) -> pd.DataFrame:
        if together:
            together[0].wait(timeout=60)  # both runs have computed their frame before either stores it
        return pd.DataFrame({"wave": context.partition_key, "customer_id": [f"C{i}" for i in range(500)], "score": 1.0})

    assert _materialize(url, scores, "2026-11-09").success  # the table exists: the race is on the rows
    threads = [threading.Thread(target=lambda: results.append(_materialize(url, scores, "2026-11-16").success)) for _ in range(2)]
    together.append(threading.Barrier(2))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True, True]
    assert _rows(url).groupby("wave").size().to_dict() == {"2026-11-09": 500, "2026-11-16": 500}


def test_writers_of_two_partitions_adding_the_same_column_at_once_do_not_deadlock(url):
    base = pd.DataFrame({"wave": ["2026-11-02"], "customer_id": ["C0"], "score": [1.0]})
    with postgres.transaction(url) as connection, connection.cursor() as cursor, duckdb.connect() as duck:
        postgres.ensure_schema(cursor)
        duck.register("obj", base)
        postgres.store(cursor, "scores", duck, "SELECT * FROM obj", replace_where="wave = '2026-11-02'")
    errors: list[BaseException] = []
    locked = threading.Barrier(2)

    def write(wave: str) -> None:
        try:
            frame = pd.DataFrame({"wave": wave, "customer_id": ["C1", "C2"], "score": 2.0, "added": [1, 2]})  # a column the table lacks
            where = f"wave = '{wave}'"
            with postgres.transaction(url) as connection, connection.cursor() as cursor, duckdb.connect() as duck:
                postgres.ensure_schema(cursor)
                postgres.lock_slice(cursor, "scores", where)
                locked.wait(timeout=60)  # both hold their slice before either changes the table
                duck.register("obj", frame)
                postgres.store(cursor, "scores", duck, "SELECT * FROM obj", replace_where=where)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(wave,)) for wave in ("2026-11-09", "2026-11-16")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert _rows(url).groupby("wave").size().to_dict() == {"2026-11-02": 1, "2026-11-09": 2, "2026-11-16": 2}


def test_a_bad_url_names_the_server_and_never_the_password():
    with pytest.raises(ConfigError) as raised:
        postgres.connect("postgresql://cpo:Se@cretPW@127.0.0.1:1/cpo")
    assert "cretPW" not in str(raised.value) and "Se@" not in str(raised.value)
    with pytest.raises(ConfigError, match="CPO_WAREHOUSE_URL"):
        postgres.connect("postgresql://cpo@127.0.0.1:1/cpo?nonsense=1")


def test_earlier_waves_and_row_checks_read_the_same_on_both_warehouses(url, tmp_path):
    """What the Thompson allocation reads (every wave before this one) and whether a wave is
    stored, on the shared warehouse and on the embedded one, from the same rows."""
    from personalization_assets.defs.assignment import _warehouse_rows
    from personalization_assets.defs.resources import EmbeddedWarehouse, SharedWarehouse

    frame = pd.DataFrame({"wave": ["2026-11-02", "2026-11-09", "2026-11-16"], "customer_id": ["C1", "C2", "C3"], "score": [1.0, 2.0, 3.0]})
    with postgres.transaction(url) as connection, connection.cursor() as cursor, duckdb.connect() as duck:
        postgres.ensure_schema(cursor)
        duck.register("obj", frame)
        postgres.store(cursor, "scores", duck, "SELECT * FROM obj")
    embedded = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(embedded)) as connection:
        connection.register("obj", frame)
        connection.execute("CREATE SCHEMA personalization; CREATE TABLE personalization.scores AS SELECT * FROM obj")
    for warehouse in (SharedWarehouse(url=url), EmbeddedWarehouse(database=str(embedded))):
        earlier = _warehouse_rows(warehouse, "scores", "wave < ?", "2026-11-16", this_wave_only=False)
        assert sorted(earlier["wave"]) == ["2026-11-02", "2026-11-09"], type(warehouse).__name__
        assert warehouse.has_rows("scores", "2026-11-09") and not warehouse.has_rows("scores", "2026-11-23")
        assert not warehouse.has_rows("absent", "2026-11-09")
