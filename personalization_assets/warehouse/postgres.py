"""The shared warehouse on PostgreSQL: tables many step processes write and read at once.

Tables move in and out in bulk with `COPY`, as CSV that DuckDB writes and reads, so a frame stored
here and read back is the frame the DuckDB warehouse would give back: the same columns, types and
values. Text is quoted and NULL is an unquoted `\\N`, so an empty string and a missing value stay
apart. Column types map one to one (DuckDB's TINYINT, which PostgreSQL lacks, is the domain
`personalization.tinyint`, a smallint from -128 to 127, so it reads back as TINYINT).

Writers of different partitions of one table do not wait for each other: each partition's
delete and `COPY` run in one transaction (a failure or a kill leaves the partition as it was).
Two writers of the same partition (or of one unpartitioned table) take turns, by a
transaction-level advisory lock on that slice, so the second replaces the first's rows instead of
adding to them. Creating a table or adding a column takes another such lock on the table's name,
so two steps storing a table's first partitions at once do not both create it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from personalization_assets.campaign.errors import ConfigError
from personalization_assets.campaign.paths import WAREHOUSE_SCHEMA
from personalization_assets.warehouse import Warehouse

# DuckDB column type -> PostgreSQL column type, and back.
_TO_POSTGRES = {
    "VARCHAR": "text", "BIGINT": "bigint", "INTEGER": "integer", "SMALLINT": "smallint", "TINYINT": f"{WAREHOUSE_SCHEMA}.tinyint",
    "DOUBLE": "double precision", "FLOAT": "real", "BOOLEAN": "boolean", "DATE": "date", "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz", '"NULL"': "text", "NULL": "text",
}
_TO_DUCKDB = {
    "text": "VARCHAR", "character varying": "VARCHAR", "bigint": "BIGINT", "integer": "INTEGER", "smallint": "SMALLINT",
    "tinyint": "TINYINT", "double precision": "DOUBLE", "real": "FLOAT", "boolean": "BOOLEAN", "date": "DATE",
    "timestamp without time zone": "TIMESTAMP", "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
}
# CSV as both engines read and write it: every value quoted, NULL an unquoted \N.
_COPY_OPTIONS = "FORMAT csv, HEADER true, NULL '\\N'"
_DUCKDB_CSV_IN = "header = true, auto_detect = false, delim = ',', quote = '\"', escape = '\"', nullstr = '\\N', allow_quoted_nulls = false"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def describe_url(url: str) -> str:
    """`url` without its user and password: what follows the last "@" (host, port, database), so an
    "@" or "/" in an unescaped password cannot leak it, and without its query."""
    scheme, _, rest = url.partition("://")
    return f"{scheme or 'postgresql'}://{rest.rsplit('@', 1)[-1].split('?', 1)[0]}"


def connect(url: str):
    """A psycopg2 connection to the warehouse at `url`; a refused or malformed connection is a
    ConfigError naming the server, never libpq's text (which can quote parts of the URL)."""
    import psycopg2

    try:
        return psycopg2.connect(url)
    except psycopg2.Error as exc:
        raise ConfigError("CPO_WAREHOUSE_URL", f"cannot connect to the PostgreSQL warehouse at {describe_url(url)} "
                          f"({type(exc).__name__}): check the URL, that the server is up and the credentials "
                          "(PGPASSWORD or ~/.pgpass)") from None


@contextmanager
def transaction(url: str) -> Iterator:
    """One transaction on a new connection: committed when the block succeeds, rolled back when it raises."""
    connection = connect(url)
    try:
        with connection:  # psycopg2: commit on success, rollback on an exception
            yield connection
    finally:
        connection.close()


def column_types(cursor, table: str) -> dict[str, str]:
    """`table`'s columns, in order, as DuckDB types (empty when it does not exist)."""
    cursor.execute(
        "SELECT column_name, data_type, domain_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position", [WAREHOUSE_SCHEMA, table])
    return {name: _TO_DUCKDB["tinyint" if domain == "tinyint" else data_type] for name, data_type, domain in cursor.fetchall()}


def stored_tables(cursor) -> set[str]:
    cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [WAREHOUSE_SCHEMA])
    return {row[0] for row in cursor.fetchall()}


def _lock_table_name(cursor, table: str) -> None:
    """Serialise schema changes to `table` (its creation, added columns) until this transaction ends."""
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"cpo-warehouse:{WAREHOUSE_SCHEMA}.{table}"])


def lock_slice(cursor, table: str, where: str) -> None:
    """Serialise the writers of one slice of `table` (the rows of `where`, or all of them) until this
    transaction ends; writers of other slices go on. Every writer takes its locks in the same order
    (the schema's, a slice's, the table's schema changes) and changes the table's columns before it
    deletes any row (`store`), so no writer holds row locks while it waits for the schema lock: they
    cannot deadlock."""
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"cpo-slice:{WAREHOUSE_SCHEMA}.{table}:{where}"])


def delete(cursor, table: str, where: str) -> None:
    """Delete `table`'s rows of `where` ("" for all of them), when the table exists."""
    if column_types(cursor, table):
        cursor.execute(f"DELETE FROM {WAREHOUSE_SCHEMA}.{_quote(table)}" + (f" WHERE {where}" if where else ""))


def _has_tinyint(cursor) -> bool:
    cursor.execute("SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = %s AND t.typname = 'tinyint'",
                   [WAREHOUSE_SCHEMA])
    return bool(cursor.fetchone()[0])


def ensure_schema(cursor) -> None:
    """The schema and its `tinyint` domain, created once (under a lock: CREATE ... IF NOT EXISTS can race)."""
    if _has_tinyint(cursor):
        return
    _lock_table_name(cursor, "")
    cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {WAREHOUSE_SCHEMA}")
    if not _has_tinyint(cursor):  # as it is now that no one else can create it
        cursor.execute(f"CREATE DOMAIN {WAREHOUSE_SCHEMA}.tinyint AS smallint CHECK (VALUE BETWEEN -128 AND 127)")


def _postgres_type(duckdb_type: str, table: str, column: str) -> str:
    if duckdb_type not in _TO_POSTGRES:
        storable = sorted(name for name in _TO_POSTGRES if "NULL" not in name)
        raise ConfigError(f"{WAREHOUSE_SCHEMA}.{table}", f"column {column!r} has the type {duckdb_type}, which the PostgreSQL "
                          f"warehouse does not store (it stores {storable})")
    return _TO_POSTGRES[duckdb_type]


def store(cursor, table: str, duck, select: str, replace_where: str | None = None) -> None:
    """Put the rows of DuckDB's `select` (over the frames registered on `duck`) in `table`, by
    column name, creating it, or adding the columns it lacks, first; then, when `replace_where` is
    given ("" for every row), delete the rows it selects before copying the new ones in."""
    described = [(row[0], row[1]) for row in duck.execute(f"DESCRIBE {select}").fetchall()]
    wanted = {name: _postgres_type(duckdb_type, table, name) for name, duckdb_type in described}
    stored = column_types(cursor, table)
    if not stored or set(wanted) - set(stored):
        _lock_table_name(cursor, table)
        stored = column_types(cursor, table)  # as it is now that no one else can change it
        qualified = f"{WAREHOUSE_SCHEMA}.{_quote(table)}"
        if not stored:
            cursor.execute(f"CREATE TABLE {qualified} ({', '.join(f'{_quote(n)} {t}' for n, t in wanted.items())})")
        else:
            for name in [n for n in wanted if n not in stored]:
                cursor.execute(f"ALTER TABLE {qualified} ADD COLUMN {_quote(name)} {wanted[name]}")
    if replace_where is not None:
        delete(cursor, table, replace_where)
    with tempfile.TemporaryDirectory(prefix="cpo-copy-") as scratch:
        path = Path(scratch) / "rows.csv"
        duck.execute(f"COPY ({select}) TO '{path.as_posix()}' (HEADER, DELIMITER ',', QUOTE '\"', ESCAPE '\"', NULLSTR '\\N', FORCE_QUOTE *)")
        with path.open("rb") as rows:
            columns = ", ".join(_quote(name) for name in wanted)
            cursor.copy_expert(f"COPY {WAREHOUSE_SCHEMA}.{_quote(table)} ({columns}) FROM STDIN WITH ({_COPY_OPTIONS})", rows)


@contextmanager
def _copied(cursor, select: str, params: Sequence[object], types: dict[str, str]) -> Iterator[str]:
    """The rows of PostgreSQL's `select`, copied out as CSV into a temporary file for the `with`
    block: yields DuckDB's reader of that file, with the columns typed as `types` says."""
    statement = cursor.mogrify(select, list(params)).decode() if params else select
    with tempfile.TemporaryDirectory(prefix="cpo-copy-") as scratch:
        path = Path(scratch) / "rows.csv"
        with path.open("wb") as rows:
            cursor.copy_expert(f"COPY ({statement}) TO STDOUT WITH ({_COPY_OPTIONS})", rows)
        spec = ", ".join(f"'{name.replace(chr(39), chr(39) * 2)}': '{kind}'" for name, kind in types.items())
        yield f"read_csv('{path.as_posix()}', {_DUCKDB_CSV_IN}, columns = {{{spec}}})"


def fetch(cursor, table: str, select: str, columns: Sequence[str] | None = None):
    """The rows of PostgreSQL's `select` over `table`, as a data frame typed as DuckDB types the
    table's columns (or `columns` of them)."""
    import duckdb

    types = column_types(cursor, table)
    if not types:
        raise ConfigError(f"{WAREHOUSE_SCHEMA}.{table}", "the warehouse holds no such table yet: materialize its asset first")
    missing = [name for name in columns or () if name not in types]
    if missing:
        raise ConfigError(f"{WAREHOUSE_SCHEMA}.{table}", f"has no column {', '.join(missing)}: materialize its asset again")
    with _copied(cursor, select, (), {name: types[name] for name in (columns or types)}) as rows, duckdb.connect() as duck:
        return duck.execute(f"SELECT * FROM {rows}").df()


def copy_into_duckdb(cursor, duck, table: str, types: dict[str, str], where: str = "", params: Sequence[object] = ()) -> None:
    """`personalization.<table>` on the DuckDB connection `duck`, holding `table`'s rows (those of
    `where`), its columns typed `types` (`column_types`)."""
    select = f"SELECT * FROM {WAREHOUSE_SCHEMA}.{_quote(table)}{' WHERE ' + where if where else ''}"
    with _copied(cursor, select, params, types) as rows:
        duck.execute(f"CREATE TABLE {WAREHOUSE_SCHEMA}.{_quote(table)} AS SELECT * FROM {rows}")


class PostgresWarehouse(Warehouse):
    """The shared warehouse: the schema `personalization` of the PostgreSQL database at `url`."""

    kind = "postgres"

    def __init__(self, url: str):
        self.url = url

    def describe(self) -> str:
        return describe_url(self.url)

    def has_rows(self, table: str, wave: str) -> bool:
        with transaction(self.url) as connection, connection.cursor() as cursor:
            if not column_types(cursor, table):
                return False
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {WAREHOUSE_SCHEMA}.{_quote(table)} WHERE wave = %s)", [wave])
            return bool(cursor.fetchone()[0])

    @contextmanager
    def reader(self, tables: Iterable[str] | None = None, *, wave: str | None = None) -> Iterator:
        import duckdb

        with transaction(self.url) as connection, connection.cursor() as cursor, duckdb.connect() as duck:
            # One snapshot for every table copied: a reader never sees half of a run's writes.
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            duck.execute(f"CREATE SCHEMA {WAREHOUSE_SCHEMA}")
            stored = stored_tables(cursor)
            for table in sorted(stored if tables is None else set(tables) & stored):
                types = column_types(cursor, table)
                by_wave = wave is not None and "wave" in types
                copy_into_duckdb(cursor, duck, table, types, "wave = %s" if by_wave else "", [wave] if by_wave else [])
            yield duck
