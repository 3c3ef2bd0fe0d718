"""The warehouse IO managers: Dagster's DuckDB pandas IO manager, atomic, typed, without
re-reading; and its twin for the shared PostgreSQL warehouse (`PostgresWarehouseIOManager`, at the
end), which stores the same tables with the same types through `warehouse/postgres.py`.

Every asset's table is written to the warehouse as `DuckDBPandasIOManager` writes it (one table per
asset, partitions replaced in place), with two guarantees it does not give by itself:

- **Atomic**: a partition's delete and insert run in one transaction. A failure or a kill at any
  point leaves the partition as it was (DuckDB discards an uncommitted transaction on recovery),
  never deleted and not yet written.
- **Typed**: every column an asset's schema declares (`dagster/column_schema`, `defs/types.py`)
  is stored as its declared type; any other text column whose values are all missing (the `hold_reason` of a wave in which
  nobody is held out) is stored as VARCHAR, not as DuckDB's type "NULL", which no later wave's
  text could be inserted into; a table stored with such a column before is altered to VARCHAR.
  Rows are inserted by column name, and a table stored by an earlier version gains the columns
  it lacks (Dagster's handler inserts by position).

The other change is reading inside one run: a step
whose input was stored earlier in the same process and run gets that frame back (the columns it
asked for, as a copy) instead of reading the table it was just written to. At a million customers
a round trip through DuckDB costs about a second per wide table per reader, and the wave has a
dozen readers. Everything else reads the warehouse as before: another process (the multiprocess
executor's steps, a later run, the UI), another run, partitions other than the ones stored, and
frames whose dtypes DuckDB would not give back unchanged.

The frame handed back is the one DuckDB would return: missing text is None (as DuckDB returns a
NULL VARCHAR), the index is 0..n-1. Only plain numpy dtypes (object, bool, integers, floats)
qualify; a frame with a categorical, datetime or pandas extension column is always read back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dagster as dg
import numpy as np
import pandas as pd
from dagster._core.definitions.metadata import TableMetadataSet
from dagster._core.storage.db_io_manager import (
    DbClient,
    DbIOManager,
    DbTypeHandler,
    TableSlice,
)
from dagster_duckdb.io_manager import DuckDbClient, _partition_where_clause
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler
from pydantic import Field

from personalization_assets.campaign.paths import WAREHOUSE_SCHEMA, table_exists
from personalization_assets.warehouse import postgres

_PLAIN_KINDS = frozenset("Obiuf")


def _as_loaded(frame: pd.DataFrame) -> pd.DataFrame | None:
    """`frame` as the warehouse would return it, or None when that cannot be guaranteed."""
    if frame.empty or not frame.columns.is_unique:
        return None  # the DuckDB handler skips empty frames; duplicate names do not round-trip
    if not all(isinstance(dtype, np.dtype) and dtype.kind in _PLAIN_KINDS for dtype in frame.dtypes):
        return None
    if not all(isinstance(name, str) for name in frame.columns):
        return None
    loaded = frame.reset_index(drop=True) if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0 else frame
    for name, dtype in frame.dtypes.items():
        if dtype == object:
            values = loaded[name].to_numpy()
            missing = pd.isna(values)
            if missing.any():
                if loaded is frame:
                    loaded = frame.copy(deep=False)
                values = values.copy()
                values[missing] = None
                loaded[name] = values
    return loaded


class _RunCache(dg.IOManager):
    """Wraps the DuckDB IO manager of one run (Dagster creates IO managers per run): writes go
    through; reads of this run's own outputs are served from memory."""

    def __init__(self, inner: dg.IOManager):
        self.inner = inner
        self.frames: dict[tuple[str, tuple[str, ...]], pd.DataFrame] = {}

    @staticmethod
    def _key(asset_key: dg.AssetKey, partitions: Sequence[str]) -> tuple[str, tuple[str, ...]]:
        return asset_key.to_user_string(), tuple(sorted(partitions))

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        self.inner.handle_output(context, obj)
        if isinstance(obj, pd.DataFrame) and context.has_asset_key:
            partitions = context.asset_partition_keys if context.has_asset_partitions else ()
            loaded = _as_loaded(obj)
            if loaded is not None:
                self.frames[self._key(context.asset_key, partitions)] = loaded

    def load_input(self, context: dg.InputContext) -> object:
        frame = None
        if context.has_asset_key:
            partitions = context.asset_partition_keys if context.has_asset_partitions else ()
            frame = self.frames.get(self._key(context.asset_key, partitions))
        if frame is None:
            return self.inner.load_input(context)
        columns = (context.definition_metadata or {}).get("columns")
        if columns and not set(columns) <= set(frame.columns):
            return self.inner.load_input(context)  # let the warehouse raise its own error
        context.log.debug(f"{context.asset_key.to_user_string()}: this run's stored frame, not re-read from the warehouse")
        return (frame[list(columns)] if columns else frame).copy()


class TransactionalDuckDbClient(DuckDbClient):
    """Dagster's DuckDB client, with every connection's work (a partition's delete, then its insert)
    in one transaction: committed when the work succeeds, rolled back when it raises."""

    @staticmethod
    @contextmanager
    def connect(context, table_slice) -> Iterator:
        with DuckDbClient.connect(context, table_slice) as connection:
            try:
                connection.execute("BEGIN TRANSACTION")
                try:
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            finally:
                # Dagster's client closes the connection only when the work succeeded; a connection
                # left open would keep the database file locked for the rest of the process.
                connection.close()

    @staticmethod
    def delete_table_slice(context, table_slice: TableSlice, connection) -> None:
        # Asked first rather than tried: inside a transaction, a failed DELETE on a table that does
        # not exist yet would abort the transaction (Dagster's client catches the error instead).
        if table_exists(connection, table_slice.table, table_slice.schema):
            DuckDbClient.delete_table_slice(context, table_slice, connection)


def _text_where_all_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with each object column whose values are all missing typed as text, so DuckDB
    stores it as VARCHAR (an all-None object column would become DuckDB's type "NULL")."""
    empty = [name for name, dtype in frame.dtypes.items() if dtype == object and frame[name].isna().all()]
    if not empty:
        return frame
    return frame.assign(**{name: pd.Series(pd.NA, index=frame.index, dtype="string") for name in empty})


# The column kinds a table schema declares (`defs/types.py`), as DuckDB types.
_DUCKDB_TYPES = {"object": "VARCHAR", "string": "VARCHAR", "int64": "BIGINT", "int32": "INTEGER", "float64": "DOUBLE",
                 "float32": "FLOAT", "bool": "BOOLEAN"}


def _typed_select(frame: pd.DataFrame, schema: dg.TableSchema | None) -> str:
    """`SELECT ... FROM obj` with every column the asset's declared schema names cast to its
    declared type, so a table's types come from its contract, not from one frame's values."""
    declared = {column.name: _DUCKDB_TYPES.get(column.type) for column in (schema.columns if schema else [])}
    columns = [f'CAST("{name}" AS {declared[name]}) AS "{name}"' if declared.get(name) else f'"{name}"' for name in frame.columns]
    return f"SELECT {', '.join(columns)} FROM obj"


class TypedDuckDBPandasTypeHandler(DuckDBPandasTypeHandler):
    """DuckDB's pandas handler, never storing a column of type "NULL" (and repairing a table that
    an earlier version stored with one), and inserting by column name: a table stored by an
    earlier version gains the columns it lacks, rather than taking values in the wrong columns
    (Dagster's handler inserts by position)."""

    def handle_output(self, context: dg.OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection):
        if obj.empty:
            return super().handle_output(context, table_slice, obj, connection)  # skipped, with Dagster's warning
        table = f"{table_slice.schema}.{table_slice.table}"
        stored = dict(connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            [table_slice.schema, table_slice.table],
        ).fetchall())
        obj = _text_where_all_missing(obj)
        select = _typed_select(obj, (context.definition_metadata or {}).get("dagster/column_schema"))
        if not stored:
            connection.execute(f"CREATE TABLE {table} AS {select}")
        else:
            for column, data_type in stored.items():
                if data_type in ("NULL", '"NULL"'):  # DuckDB spells the type with quotes in information_schema
                    connection.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" TYPE VARCHAR')
            for column in [c for c in obj.columns if c not in stored]:
                data_type = connection.execute(f'SELECT typeof("{column}") FROM obj LIMIT 1').fetchone()[0]
                connection.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {data_type}')
            connection.execute(f"INSERT INTO {table} BY NAME {select}")
        _add_stored_metadata(context, obj, "duckdb")


def _add_stored_metadata(context: dg.OutputContext, obj: pd.DataFrame, storage_kind: str) -> None:
    context.add_output_metadata({
        **(TableMetadataSet(partition_row_count=len(obj), storage_kind=storage_kind) if context.has_partition_key
           else TableMetadataSet(row_count=len(obj), storage_kind=storage_kind)),
        "dataframe_columns": dg.MetadataValue.table_schema(
            dg.TableSchema(columns=[dg.TableColumn(name=name, type=str(dtype)) for name, dtype in obj.dtypes.items()])
        ),
    })


class WarehouseIOManager(DuckDBPandasIOManager):
    """`DuckDBPandasIOManager` (same configuration, same tables), whose writes are atomic per
    partition and typed, and which does not re-read, within a run and process, the frames that run
    has just stored."""

    @staticmethod
    def type_handlers() -> Sequence:
        return [TypedDuckDBPandasTypeHandler()]

    def create_io_manager(self, context) -> dg.IOManager:
        return _RunCache(DbIOManager(
            db_client=TransactionalDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="DuckDBIOManager",
        ))


class PostgresClient(DbClient):
    """Dagster's database client for the shared warehouse (`warehouse/postgres.py`): one
    transaction per partition written (its delete, then its rows) or read."""

    def __init__(self, url: str):
        self.url = url

    @contextmanager
    def connect(self, context, table_slice) -> Iterator:
        with postgres.transaction(self.url) as connection, connection.cursor() as cursor:
            yield cursor

    def ensure_schema_exists(self, context, table_slice: TableSlice, cursor) -> None:
        postgres.ensure_schema(cursor)

    @staticmethod
    def slice_where(table_slice: TableSlice) -> str:
        return _partition_where_clause(table_slice.partition_dimensions) if table_slice.partition_dimensions else ""

    def delete_table_slice(self, context, table_slice: TableSlice, cursor) -> None:
        # Two runs replacing the same partition (or the same unpartitioned table) at once would each
        # delete only the rows committed before it began, and both insert: the second waits here.
        # The delete itself is the type handler's, after any change to the table's columns (see
        # `postgres.lock_slice`), in this same transaction.
        postgres.lock_slice(cursor, table_slice.table, self.slice_where(table_slice))

    @staticmethod
    def get_select_statement(table_slice: TableSlice) -> str:
        return DuckDbClient.get_select_statement(table_slice)  # the same SQL serves both engines


class PostgresPandasTypeHandler(DbTypeHandler[pd.DataFrame]):
    """Frames in and out of the shared warehouse, typed as `TypedDuckDBPandasTypeHandler` types
    them: the columns an asset's schema declares as declared, all-missing text as text."""

    def handle_output(self, context: dg.OutputContext, table_slice: TableSlice, obj: pd.DataFrame, cursor):
        import duckdb

        where = PostgresClient.slice_where(table_slice)
        if obj.empty:
            # As the DuckDB warehouse does: the slice's old rows are deleted, no new ones stored.
            postgres.delete(cursor, table_slice.table, where)
            context.log.warning(f"{table_slice.table}: an empty frame is not stored (as the DuckDB warehouse skips it)")
            return
        obj = _text_where_all_missing(obj)
        with duckdb.connect() as duck:
            duck.register("obj", obj)
            postgres.store(cursor, table_slice.table, duck, _typed_select(obj, (context.definition_metadata or {}).get("dagster/column_schema")),
                           replace_where=where)
        _add_stored_metadata(context, obj, "postgres")

    def load_input(self, context: dg.InputContext, table_slice: TableSlice, cursor) -> pd.DataFrame:
        if table_slice.partition_dimensions and len(context.asset_partition_keys) == 0:
            return pd.DataFrame()
        return postgres.fetch(cursor, table_slice.table, PostgresClient.get_select_statement(table_slice), table_slice.columns)

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [pd.DataFrame]


class PostgresWarehouseIOManager(dg.ConfigurableIOManagerFactory):
    """The shared warehouse's IO manager: the same tables as `WarehouseIOManager`, in the schema
    `personalization` of a PostgreSQL database, written by many step processes at once; within a
    run and process, frames just stored are not re-read."""

    url: str = Field(description="postgresql://user@host:port/dbname (a dagster.EnvVar: never stored); the tables are in its "
                                 f"schema {WAREHOUSE_SCHEMA}")

    def create_io_manager(self, context) -> dg.IOManager:
        return _RunCache(DbIOManager(
            db_client=PostgresClient(self.url), database="", schema=WAREHOUSE_SCHEMA, type_handlers=[PostgresPandasTypeHandler()],
            default_load_type=pd.DataFrame, io_manager_name="PostgresWarehouseIOManager",
        ))
