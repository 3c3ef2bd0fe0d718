"""Dagster's own command lines on this project: `dg list defs`, `dg check defs`, `dg launch`, `dg dev`,
`dagster definitions validate`. Each runs as a user would, in a subprocess of this checkout."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets_tests.defs.pipeline import read_table

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
DG = str(BIN / "dg")


def _environment(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "OPENAI_", "CPO_"))}
    return {**environ, "DAGSTER_DISABLE_TELEMETRY": "1", **extra}


def _run(*command: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env or _environment(), capture_output=True, text=True, timeout=timeout)


def test_dg_list_and_check_and_dagster_validate_see_the_whole_graph(tmp_path):
    listed = _run(DG, "list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    counts = {kind: len(found.get(kind, [])) for kind in ("assets", "asset_checks", "jobs", "schedules", "sensors", "resources")}
    assert counts == {"assets": 26, "asset_checks": 8, "jobs": 5, "schedules": 1, "sensors": 1, "resources": 10}

    checked = _run(DG, "check", "defs")
    assert checked.returncode == 0, checked.stderr
    validated = _run(str(BIN / "dagster"), "definitions", "validate", "-m", "personalization_assets.definitions",
                     env=_environment(DAGSTER_HOME=str(tmp_path)))
    assert validated.returncode == 0, validated.stderr
    assert "Validation successful" in validated.stdout + validated.stderr


def test_dg_launch_backfills_one_segment(materialized_copy):
    """The README's `dg launch --assets retrieved_content,message_variants,safety_verdicts --partition <segment>`."""
    folder = materialized_copy
    before = read_table(folder.warehouse, "safety_verdicts")
    launched = _run(DG, "launch", "--assets", "retrieved_content,message_variants,safety_verdicts", "--partition", "loyal_frequent",
                    env=_environment(CPO_CAMPAIGN=str(folder.campaign), CPO_HOME=str(folder.home), DAGSTER_HOME=str(folder.dagster_home)))
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert "RUN_SUCCESS" in launched.stdout + launched.stderr
    after = read_table(folder.warehouse, "safety_verdicts")
    # Only that segment's rows were replaced, every segment still has its four verdicts.
    assert after.groupby("segment").size().to_dict() == before.groupby("segment").size().to_dict()


def test_dg_dev_serves_the_ui_on_loopback(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home = tmp_path / "dagster"
    home.mkdir()
    server = subprocess.Popen(
        [DG, "dev", "--host", "127.0.0.1", "--port", str(port)], cwd=PROJECT_ROOT,
        env=_environment(DAGSTER_HOME=str(home), CPO_HOME=str(tmp_path)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline, answer = time.monotonic() + 180, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
                    answer = json.loads(response.read())
                break
            except OSError:
                time.sleep(1)
        assert answer is not None and "dagster_webserver_version" in answer, "dg dev did not serve the UI"
        query = json.dumps({"query": "{ repositoriesOrError { ... on RepositoryConnection { nodes { name assetNodes { id } } } } }"})
        request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query.encode(), headers={"Content-Type": "application/json"})
        deadline = time.monotonic() + 120
        while True:
            with urllib.request.urlopen(request, timeout=30) as response:
                nodes = json.loads(response.read())["data"]["repositoriesOrError"].get("nodes", [])
            if nodes or time.monotonic() > deadline:
                break
            time.sleep(1)  # the code location is still loading
        assert sum(len(node["assetNodes"]) for node in nodes) == 26
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
