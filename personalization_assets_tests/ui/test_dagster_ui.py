"""The Dagster UI as our users use it, in a real browser.

`dagster dev` runs on this project's workspace.yaml, on 127.0.0.1 and a free port, with a temporary
DAGSTER_HOME and a 2,000-customer campaign in tmp. Debian's Chromium, driven by playwright (never a
downloaded browser), then does what the README tells users to do:

1. open the asset graph (two groups: content and wave);
2. materialize the content group for all segments (a backfill: `screened_corpus` and `content_index`, then every segment
   in one run, thanks to the single-run backfill policy);
3. materialize the wave group for one wave partition (one run) and wait for it to succeed;
4. read the asset checks on each asset's Checks tab: the safety pass rate and the sample-ratio
   test pass, the lift threshold is evaluated (on 2,000 customers it may pass or fail);
5. edit the friendly tone's prompt and materialize `message_variants` and `safety_verdicts` for one
   segment; the warehouse shows that only that segment's friendly variant changed.

Screenshots of every step go to `<tmp_path>/screenshots/` (paths printed; `pytest -s` shows them).
Only loopback traffic is allowed: the browser aborts any request to another host.

Needs /usr/bin/chromium (`apt-get install chromium`) and the `playwright` package (the `test`
extra). Without them the test is skipped, unless CPO_REQUIRE_UI_TEST=1 (set by .ci/run), which
turns the skip into a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from personalization_assets.audience.segmentation import load_catalog
from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets.definitions import campaign_definitions
from personalization_assets.defs.jobs import WAVE_JOB
from personalization_assets.experiment.engagement import SOURCE_SIMULATED
from personalization_assets_tests.conftest import TEST_CUSTOMERS, TEST_WAVE
from personalization_assets_tests.defs.pipeline import (
    BACKFILLED_SEGMENT,
    assert_only_backfilled_segment_changed,
    edit_friendly_openers,
    read_table,
    variants_by_key,
)
from personalization_assets_tests.loopback import free_port

pytestmark = [pytest.mark.ui, pytest.mark.e2e]

CHROMIUM = Path("/usr/bin/chromium")
# Needed on this machine (root, no GPU, no network but loopback); keep Chromium quiet and local.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT_S = 180
RUN_TIMEOUT_S = 900  # a run's steps each start a process: slow machines need minutes
EDITED = BACKFILLED_SEGMENT
FINAL_RUN = ("Success", "Failure", "Canceled")
FINAL_BACKFILL = ("Succeeded", "Completed", "Failed", "Canceled", "Completed with failures")


def require_browser() -> None:
    missing = []
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install -e '.[test]')")
    if missing:
        message = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CPO_REQUIRE_UI_TEST") == "1":
            pytest.fail(f"{message}; CPO_REQUIRE_UI_TEST=1 forbids skipping it")
        pytest.skip(message)


@dataclass
class DagsterDev:
    base_url: str
    process: subprocess.Popen
    log_path: Path
    dagster_home: Path

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(line for line in text.splitlines() if "Warning" not in line)[-6000:] or "(empty log)"

    def graphql(self, query: str) -> dict:
        request = urllib.request.Request(
            f"{self.base_url}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def wait_for_server(server: DagsterDev) -> None:
    """Until the webserver answers and the code location is loaded (or the process dies)."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    status = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"dagster dev exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.base_url}/server_info", timeout=5) as response:
                json.loads(response.read())
            workspace = server.graphql(
                "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus"
                " locationOrLoadError { __typename ... on PythonError { message } } } } } }"
            )
            entries = workspace["data"]["workspaceOrError"]["locationEntries"]
            status = json.dumps(entries)
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
                if errors:
                    pytest.fail(f"the code location failed to load: {errors}")
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, TypeError, ValueError) as exc:
            status = repr(exc)
        time.sleep(1)
    pytest.fail(f"dagster dev not ready after {SERVER_START_TIMEOUT_S} s ({status}):\n{server.log_tail()}")


def default_sigint() -> None:
    # A process started in the background by a non-interactive shell (CI) inherits SIGINT ignored;
    # Python then never installs its KeyboardInterrupt handler, and `dagster dev` (which maps
    # SIGTERM to SIGINT) would ignore SIGTERM too. Restore the default in the child.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop the server we started and everything it started: its own session's process group,
    whose id is the PID we started. SIGTERM first (dagster dev shuts its services down), then
    SIGKILL for whatever is left (code servers, a run still executing)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # the whole group is gone already
        pass


@pytest.fixture
def dagster_dev(campaign_folder, tmp_path) -> Iterator[DagsterDev]:
    require_browser()
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    env = {
        **os.environ,
        "CPO_CAMPAIGN": str(campaign_folder.campaign),
        "CPO_HOME": str(campaign_folder.warehouse.parent),
        "DAGSTER_HOME": str(dagster_home),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "dagster-dev.log"
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=campaign_folder.root, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=default_sigint,
        )
    server = DagsterDev(f"http://127.0.0.1:{port}", process, log_path, dagster_home)
    print(f"\ndagster dev pid {process.pid} on {server.base_url}, log {log_path}")
    try:
        wait_for_server(server)
        yield server
    finally:
        stop_process_group(process)


@dataclass
class Browser:
    page: object
    server: DagsterDev
    shots_dir: Path
    shots: list[Path] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def goto(self, path: str) -> None:
        self.page.goto(self.server.base_url + path, wait_until="domcontentloaded")

    def shot(self, name: str) -> Path:
        path = self.shots_dir / f"{len(self.shots) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        self.shots.append(path)
        print(f"screenshot: {path}")
        return path

    def body(self) -> str:
        return self.page.locator("body").inner_text()


@pytest.fixture
def browser(dagster_dev, tmp_path) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    shots_dir = tmp_path / "screenshots"
    shots_dir.mkdir()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = chromium.new_context(viewport={"width": 1600, "height": 1000})
            session = Browser(None, dagster_dev, shots_dir)

            def loopback_only(route) -> None:
                url = route.request.url
                if url.startswith(dagster_dev.base_url + "/") or url.startswith(("data:", "blob:")):
                    route.continue_()
                else:
                    session.blocked.append(url)
                    route.abort()

            context.route("**/*", loopback_only)
            # The first-visit "join the community" dialog: dismissed, as a returning user has it.
            context.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")
            page = context.new_page()
            page.set_default_timeout(60_000)
            session.page = page
            try:
                yield session
            finally:
                try:
                    session.shot("last-state")
                except Exception:  # the page may be gone; the screenshots so far stay
                    pass
                if session.blocked:
                    print(f"blocked non-loopback requests: {session.blocked}")
        finally:
            chromium.close()


# --- what a user does in the UI -----------------------------------------------------------------


def filter_asset_graph(browser: Browser, selection: str) -> None:
    """Global asset lineage, then type an asset selection into its search box, as a user does."""
    browser.goto("/asset-groups")
    editor = browser.page.locator(".CodeMirror").first
    editor.wait_for()
    editor.click()
    browser.page.keyboard.type(selection)
    browser.page.keyboard.press("Enter")
    browser.page.wait_for_url(re.compile(r"/asset-groups~"))


def open_materialize_dialog(browser: Browser, n_assets: int):
    page = browser.page
    page.get_by_role("button", name=re.compile(r"Materialize all")).first.click()
    dialog = page.get_by_role("dialog").filter(has_text=f"Launch runs to materialize {n_assets} assets")
    dialog.wait_for()
    return dialog


def launched_id(browser: Browser, pattern: str) -> str:
    toast = browser.page.get_by_text(re.compile(pattern))
    toast.wait_for()
    return re.search(pattern, toast.inner_text()).group(1)


def wait_for_status(browser: Browser, path: str, pattern: str, final: tuple[str, ...], what: str) -> str:
    """Reload a run or backfill page until its status is final; returns the status."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = None
    while time.monotonic() < deadline:
        browser.goto(path)
        try:
            browser.page.get_by_text(re.compile("|".join(re.escape(s) for s in FINAL_RUN + FINAL_BACKFILL + ("Started", "Queued", "Starting", "In progress")))).first.wait_for(timeout=15_000)
        except Exception:  # still loading: try again
            pass
        match = re.search(pattern, browser.body())
        status = match.group(1) if match else None
        if status in final:
            return status
        browser.page.wait_for_timeout(3_000)
    pytest.fail(f"{what} not finished after {RUN_TIMEOUT_S} s (last status {status!r}):\n{browser.server.log_tail()}")


def full_run_id(browser: Browser, short_id: str) -> str:
    """The Runs page links every run by its full id."""
    browser.goto("/runs")
    link = browser.page.locator(f'a[href^="/runs/{short_id}"]').first
    link.wait_for()
    return link.get_attribute("href").rsplit("/", 1)[-1]


def wait_for_run(browser: Browser, short_id: str, what: str) -> str:
    run_id = full_run_id(browser, short_id)
    pattern = rf"{short_id}\s*\n\s*(Success|Failure|Canceled|Canceling|Started|Starting|Queued|Not started)\b"
    status = wait_for_status(browser, f"/runs/{run_id}", pattern, FINAL_RUN, what)
    assert status == "Success", f"{what}: run {run_id} ended {status}:\n{browser.server.log_tail()}"
    browser.page.get_by_text(re.compile(r"Succeeded \([1-9]\d*\)")).first.wait_for()  # the step list has loaded
    browser.page.get_by_text("Loading run logs").first.wait_for(state="hidden")
    return run_id


def check_result(browser: Browser, asset: str, check: str, *expect: str) -> tuple[str, str]:
    """The asset's Checks tab, the check selected: (evaluation result, the panel's text), once the
    panel shows every `expect` regex (the check's description and metadata load separately)."""
    browser.goto(f"/assets/{asset}?view=checks")
    page = browser.page
    page.get_by_text(check, exact=True).first.click()
    page.get_by_text("Evaluation result").first.wait_for()
    for pattern in expect:
        page.get_by_text(re.compile(pattern)).first.wait_for()
    text = browser.body()
    match = re.search(r"Evaluation result\s*\n\s*(Passed|Failed|Skipped|Succeeded|Errored|Warning|Execution failed)", text)
    assert match, f"no evaluation result for {asset}.{check} on its Checks tab:\n{text[:3000]}"
    return match.group(1), text


# --- the warehouse, read after the runs (DuckDB allows one writer or many readers) ---------------




def backfill_runs(dagster_home: Path, backfill_id: str) -> list:
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        return list(instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id})))


def test_campaign_in_the_dagster_ui(browser: Browser, dagster_dev: DagsterDev, campaign_folder):
    started = time.monotonic()
    page, warehouse = browser.page, campaign_folder.warehouse
    segments = load_catalog(campaign_folder.data / "segments.yaml").ids

    # 1. The asset graph: the two groups of the README.
    browser.goto("/asset-groups")
    page.get_by_text("Global asset lineage").first.wait_for()
    for group in ("content", "wave"):
        page.get_by_text(group, exact=True).first.wait_for()
    browser.shot("asset-graph")

    # 2. The content group, every segment: one backfill; all segments in one run.
    filter_asset_graph(browser, 'group:"content"')
    content_assets = ("screened_corpus", "content_index", "retrieved_content", "message_variants", "safety_verdicts")
    for asset in content_assets:
        page.get_by_text(asset, exact=True).first.wait_for()
    browser.shot("content-group")
    dialog = open_materialize_dialog(browser, len(content_assets))
    dialog.get_by_role("button", name="All", exact=True).click()
    dialog.get_by_text(f"{len(segments)} partitions").first.wait_for()
    browser.shot("content-launch-all-segments")
    dialog.get_by_role("button", name="Launch backfill").click()
    backfill_id = launched_id(browser, r"Created backfill (\w+)")
    status = wait_for_status(browser, f"/runs/b/{backfill_id}", r"Status\s*\n\s*([A-Z][a-z]+(?: [a-z]+)*)", FINAL_BACKFILL, "content backfill")
    browser.shot("content-backfill-done")
    assert status in ("Succeeded", "Completed"), f"content backfill ended {status}:\n{dagster_dev.log_tail()}"
    runs = backfill_runs(dagster_dev.dagster_home, backfill_id)
    ranges = [(r.tags.get("dagster/asset_partition_range_start"), r.tags.get("dagster/asset_partition_range_end")) for r in runs]
    assert (segments[0], segments[-1]) in ranges, f"all segments should run in one run; runs' ranges: {ranges}"
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)

    # 3. The wave group for one wave: one run, which must succeed.
    filter_asset_graph(browser, 'group:"wave"')
    page.get_by_text("rollout_recommendation", exact=True).first.wait_for()
    wave_assets = campaign_definitions(campaign_folder.campaign).resolve_job_def(WAVE_JOB).asset_layer.selected_asset_keys
    dialog = open_materialize_dialog(browser, len(wave_assets))
    partition_input = dialog.locator("input[type=text]").first  # the custom partition selection
    partition_input.fill(TEST_WAVE)
    partition_input.press("Enter")
    dialog.get_by_text("1 partition", exact=True).first.wait_for()
    launch = dialog.get_by_role("button", name="Launch 1 run")
    browser.shot("wave-launch-one-partition")
    launch.click()
    wave_run = wait_for_run(browser, launched_id(browser, r"Launched run (\w+)"), "wave run")
    page.get_by_text(f"partition: {TEST_WAVE}").first.wait_for()
    browser.shot("wave-run-succeeded")

    # 4. The asset checks, on each asset's Checks tab.
    result, text = check_result(browser, "safety_verdicts", "safety_pass_rate", r"variants approved\), threshold",
                                r"This is a blocking asset check")
    browser.shot("check-safety-pass-rate")
    assert result == "Passed", text[:3000]
    assert "This is a blocking asset check" in text
    assert re.search(r"safety pass rate [\d.]+% \(\d+/\d+ variants approved\), threshold 90%: passed", text), text[:3000]
    result, text = check_result(browser, "assignments", "sample_ratio_mismatch", r"^observed_control$")
    browser.shot("check-sample-ratio-mismatch")
    assert result == "Passed", text[:3000]
    assert "p_value" in text and "observed_control" in text
    result, text = check_result(browser, "experiment_results", "lift_threshold", r"best arm '\w+': lift", r"^engagement_source$")
    browser.shot("check-lift-threshold")
    assert result in ("Passed", "Failed"), text[:3000]  # on 2,000 customers it may go either way
    assert re.search(r"best arm '\w+': lift [+-][\d.]+%", text), text[:3000]
    assert SOURCE_SIMULATED in text  # engagement_source: the UI says the engagement was simulated

    assignments = read_table(warehouse, "assignments")
    assert len(assignments) == TEST_CUSTOMERS and set(assignments["wave"]) == {TEST_WAVE}
    assert set(read_table(warehouse, "experiment_results")["wave"]) == {TEST_WAVE}

    # 5. Edit one tone's prompt, then backfill one segment's variants and verdicts.
    before = variants_by_key(warehouse)
    edit_friendly_openers(campaign_folder.root / "prompts")  # the tmp campaign's own prompts
    filter_asset_graph(browser, 'key:"message_variants" or key:"safety_verdicts"')
    dialog = open_materialize_dialog(browser, 2)
    dialog.get_by_text("Select a partition or create one").click()
    page.get_by_role("menuitem").filter(has=page.get_by_text(EDITED, exact=True)).first.click()
    dialog.get_by_text("Launch runs to materialize 2 assets").click()  # closes the partition menu
    page.get_by_role("menuitem").filter(has=page.get_by_text(EDITED, exact=True)).first.wait_for(state="hidden")
    dialog.get_by_text("1 partition", exact=True).first.wait_for()
    browser.shot("backfill-one-segment-launch")
    dialog.get_by_role("button", name="Launch 1 run").click()
    backfill_run = wait_for_run(browser, launched_id(browser, r"Launched run (\w+)"), "segment backfill run")
    page.get_by_text(f"partition: {EDITED}").first.wait_for()
    browser.shot("backfill-one-segment-succeeded")
    assert backfill_run != wave_run

    assert_only_backfilled_segment_changed(before, warehouse, segments)
    result, text = check_result(browser, "safety_verdicts", "safety_pass_rate", r"variants approved\), threshold")
    browser.shot("check-safety-pass-rate-after-backfill")
    assert result == "Passed", text[:3000]

    assert not browser.blocked, f"the UI tried to reach other hosts: {browser.blocked}"
    print(f"UI test: {time.monotonic() - started:.0f} s in the browser; screenshots in {browser.shots_dir}")
