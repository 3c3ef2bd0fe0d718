"""The warehouse: where each asset's table lives, chosen by configuration.

- **embedded** (the default): one DuckDB file, `$CPO_HOME/warehouse.duckdb`. One process writes it
  at a time, so the steps of a run take turns.
- **shared**: a PostgreSQL database, `CPO_WAREHOUSE_URL=postgresql://user@host:port/dbname` (the
  password from `PGPASSWORD` or `~/.pgpass`, as libpq reads them, or in the URL). Many step
  processes, on many machines, write and read its tables at once (`warehouse/postgres.py`).

Both hold the same tables, with the same names, columns and types, in the schema `personalization`.
Everything that reads them outside an asset's inputs (the CLI's summary, `cpo review`, `cpo audit`,
the asset checks, the tests) reads through `Warehouse.reader`: a DuckDB connection in which
`personalization.<table>` holds each table asked for, so one SQL dialect serves both warehouses.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from personalization_assets.campaign.errors import ConfigError
from personalization_assets.campaign.paths import (
    WAREHOUSE_SCHEMA,
    table_exists,
    warehouse_path,
)

WAREHOUSE_URL_ENV = "CPO_WAREHOUSE_URL"


class WarehouseBusy(Exception):
    """The embedded warehouse is being written by another process (DuckDB has one writer)."""


class Warehouse(ABC):
    """Where the asset tables are: read through DuckDB SQL (`reader`), written by the warehouse IO manager."""

    kind: str

    @abstractmethod
    @contextmanager
    def reader(self, tables: Iterable[str] | None = None, *, wave: str | None = None) -> Iterator:
        """A DuckDB connection in which `personalization.<table>` holds each of `tables` that is
        stored (default: every table). `wave` is the caller's promise that it reads only that
        wave's rows of the tables with a `wave` column: the shared warehouse then copies only
        those (the embedded one holds every row whatever the promise), so a query must still
        filter on `wave` itself, and one that reads other waves must not pass it."""

    @abstractmethod
    def has_rows(self, table: str, wave: str) -> bool:
        """Whether `table` is stored and holds rows of `wave`, asked where the table is (no copy)."""

    def describe(self) -> str:
        """Where it is, for messages: never a password."""
        return self.kind


class DuckDBWarehouse(Warehouse):
    """The embedded warehouse: a DuckDB file. Read-only readers (the CLI, `cpo audit`) fail with
    `WarehouseBusy` while a run writes it; a reader inside a run (`read_only=False`) opens it as the
    run's IO manager does, waiting a little for a writer in another step process."""

    kind = "duckdb"

    def __init__(self, path: Path | str, *, read_only: bool = True):
        self.path = Path(path)
        self.read_only = read_only

    def describe(self) -> str:
        return str(self.path)

    @contextmanager
    def reader(self, tables: Iterable[str] | None = None, *, wave: str | None = None) -> Iterator:
        import duckdb

        if not self.path.is_file():
            # Nothing stored yet: an empty warehouse, not a file created by reading it.
            with duckdb.connect() as connection:
                connection.execute(f"CREATE SCHEMA {WAREHOUSE_SCHEMA}")
                yield connection
            return
        if not self.read_only:
            from dagster._utils.backoff import backoff

            connection = backoff(fn=duckdb.connect, retry_on=(RuntimeError, duckdb.IOException),
                                 kwargs={"database": str(self.path), "read_only": False}, max_retries=10)
        else:
            try:
                connection = duckdb.connect(str(self.path), read_only=True)
            except duckdb.IOException as exc:
                raise WarehouseBusy(f"{self.path}: cannot open the warehouse ({exc}); try again when no run is writing it") from None
        with connection:
            yield connection

    def has_rows(self, table: str, wave: str) -> bool:
        with self.reader() as connection:
            return table_exists(connection, table) and connection.execute(
                f'SELECT EXISTS (SELECT 1 FROM {WAREHOUSE_SCHEMA}."{table}" WHERE wave = ?)', [wave]).fetchone()[0]


def as_warehouse(where: Warehouse | Path | str) -> Warehouse:
    """`where` as a Warehouse: a path is the embedded warehouse's DuckDB file."""
    return where if isinstance(where, Warehouse) else DuckDBWarehouse(where)


def warehouse_url(environ: Mapping[str, str] = os.environ) -> str | None:
    """The shared warehouse's URL, when one is configured."""
    url = environ.get(WAREHOUSE_URL_ENV, "").strip()
    if not url:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(WAREHOUSE_URL_ENV, "must be a PostgreSQL URL, postgresql://user@host:port/dbname "
                          "(unset: the embedded DuckDB file under CPO_HOME)")
    return url


def select_warehouse(environ: Mapping[str, str] = os.environ, *, home: Path | None = None) -> Warehouse:
    """The configured warehouse: PostgreSQL with `CPO_WAREHOUSE_URL`, else the DuckDB file of `home` (CPO_HOME)."""
    url = warehouse_url(environ)
    if url is None:
        return DuckDBWarehouse(warehouse_path(home))
    from personalization_assets.warehouse.postgres import PostgresWarehouse

    return PostgresWarehouse(url)
