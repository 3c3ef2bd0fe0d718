"""Real PostgreSQL and Redis servers for the tests, started and stopped by the test that needs them:
each listens on 127.0.0.1 only, on an ephemeral port, with its data in a temporary folder.

The binaries come from Debian's packages (`postgresql`, `redis-server`; `.ci/run` installs them).
Without them a test skips locally; with `CPO_REQUIRE_SERVICES_TEST=1` (set by `.ci/run`) a missing
binary fails it instead, as the browser test does with `CPO_REQUIRE_UI_TEST`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from personalization_assets_tests.loopback import free_port

REQUIRE_ENV = "CPO_REQUIRE_SERVICES_TEST"


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian keeps the PostgreSQL server's programs off PATH, by major version.
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def require_binaries(*names: str) -> dict[str, str]:
    """The binaries' paths; a missing one skips the test (fails it under CPO_REQUIRE_SERVICES_TEST=1)."""
    found = {name: _binary(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        message = f"needs {', '.join(missing)} (Debian packages postgresql and redis-server)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 and this test {message}")
        pytest.skip(message)
    return found  # type: ignore[return-value]


def _as_server_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user (or `nobody`)."""
    if os.geteuid() != 0:
        return []
    import pwd

    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root with neither a postgres nor a nobody user to run PostgreSQL as")


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str = "cpo"

    def url(self, database: str, driver: str = "") -> str:
        """libpq's URL of `database`; with `driver` (psycopg2), SQLAlchemy's (the Dagster instance's)."""
        return f"postgresql{'+' + driver if driver else ''}://{self.user}@127.0.0.1:{self.port}/{database}"


@contextmanager
def postgres_server(folder: Path, databases: tuple[str, ...] = ("cpo",)) -> Iterator[Postgres]:
    """A PostgreSQL server (trust authentication, loopback only, fsync off: test data) with `databases`."""
    binaries = require_binaries("initdb", "pg_ctl", "postgres")
    prefix = _as_server_user()
    if prefix:
        # The server's user must reach its folder: pytest's temporary folders are root's alone, so
        # the server gets a temporary folder of its own in the system's, removed when it stops.
        folder = Path(tempfile.mkdtemp(prefix="cpo-postgres-"))
        shutil.chown(folder, user=prefix[2])
    folder.mkdir(parents=True, exist_ok=True)
    data, sockets = folder / "data", folder / "sockets"
    _run([*prefix, "mkdir", "-p", str(sockets)])
    server = Postgres(port=free_port())
    options = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {sockets} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    try:
        # Inside the `try`: a start that fails or times out is stopped (and its folder removed) all the same.
        _run([*prefix, binaries["initdb"], "-D", str(data), "-U", server.user, "--auth=trust", "-E", "UTF8", "--no-sync"])
        _run([*prefix, binaries["pg_ctl"], "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "-t", "60", "start"])
        import psycopg2

        admin = psycopg2.connect(server.url("postgres"))
        admin.autocommit = True
        with admin.cursor() as cursor:
            for database in databases:
                cursor.execute(f'CREATE DATABASE "{database}"')
        admin.close()
        yield server
    finally:
        subprocess.run([*prefix, binaries["pg_ctl"], "-D", str(data), "-m", "immediate", "-w", "-t", "60", "stop"],
                       check=False, capture_output=True)
        if prefix:
            shutil.rmtree(folder, ignore_errors=True)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stdout}{done.stderr}")


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A Redis server on loopback, nothing persisted; yields its URL."""
    binary = require_binaries("redis-server")["redis-server"]
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder), "--save", "",
                                "--appendonly", "no", "--protected-mode", "yes"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on 127.0.0.1:{port}") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def clean_environment() -> dict[str, str]:
    """This process's environment without the project's, Dagster's and the services' settings
    (each process of a deployment gets them explicitly), with this environment's programs
    (`celery`, `dagster`) first on PATH."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("CPO_", "DAGSTER_", "AZURE_", "OPENAI_"))}
    return {**environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"}


@contextmanager
def celery_workers(count: int, env: dict[str, str], folder: Path) -> Iterator[list[Path]]:
    """`count` workers started as docs/deployment.md says (`dagster-celery worker start` with
    deploy/celery.yaml, one process each), their output in `folder`; stopped at the end (SIGTERM to
    each worker's process group, SIGKILL after a minute). `env` has this environment's programs
    first on PATH (`clean_environment`): the command runs `celery` from there. Yields the log files."""
    import signal

    from personalization_assets.campaign.paths import PROJECT_ROOT

    folder.mkdir(parents=True, exist_ok=True)
    logs = [folder / f"cpo-worker-{i}.log" for i in range(1, count + 1)]
    workers: list[subprocess.Popen] = []
    try:
        for log in logs:
            with log.open("w") as output:
                workers.append(subprocess.Popen(
                    [str(Path(sys.executable).parent / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                     "-y", str(PROJECT_ROOT / "deploy" / "celery.yaml"), "-n", log.stem, "--", "--concurrency=1",
                     "--without-heartbeat", "--without-gossip", "--without-mingle"],
                    env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True))
        yield logs
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


@contextmanager
def distributed_deployment(folder: Path, environ: dict[str, str]) -> Iterator[tuple[Postgres, dict[str, str]]]:
    """PostgreSQL (databases `dagster` and `warehouse`) and Redis for the `with` block, and the
    environment of docs/deployment.md on them: `environ` plus CPO_HOME (`folder/shared`), a
    DAGSTER_HOME holding deploy/dagster.yaml, the Celery executor and the shared warehouse."""
    from personalization_assets.campaign.paths import PROJECT_ROOT

    with postgres_server(folder / "postgres", databases=("dagster", "warehouse")) as server, redis_server(folder / "redis") as broker:
        dagster_home = folder / "shared" / "dagster"
        dagster_home.mkdir(parents=True)
        shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
        yield server, {**environ, "CPO_HOME": str(folder / "shared"), "DAGSTER_HOME": str(dagster_home), "CPO_EXECUTOR": "celery",
                       "CPO_CELERY_BROKER": broker, "CPO_CELERY_BACKEND": broker,
                       "CPO_DAGSTER_PG_URL": server.url("dagster", "psycopg2"), "CPO_WAREHOUSE_URL": server.url("warehouse")}
