"""Whole campaign waves through the three Azure backends (real SDK clients) against the loopback double.

Backends are chosen exactly as in production: `campaign_definitions` reads the environment, which
points every role at the double; waves are materialized with the same helpers as the embedded
pipeline tests. One wave (and an embedded wave of the same campaign to compare it with) is shared
by the read-only checks of this module; the fault-injection tests run their own.
"""

import logging
import shutil
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets.campaign.paths import WAREHOUSE_SCHEMA as SCHEMA
from personalization_assets.campaign.sample_data import write_sample_data
from personalization_assets.definitions import campaign_definitions
from personalization_assets.safety.screening import texts_to_screen
from personalization_assets.warehouse import DuckDBWarehouse
from personalization_assets_tests.azure_double import DEFAULT_MODEL, AzureDouble
from personalization_assets_tests.backends.conftest import (
    BACKEND_VARIABLES,
    OPENAI_KEY,
    SAFETY_KEY,
    SEARCH_INDEX,
    SEARCH_KEY,
    point_at_double,
)
from personalization_assets_tests.conftest import (
    TEST_CUSTOMERS,
    TEST_WAVE,
    CampaignFolder,
)
from personalization_assets_tests.defs.pipeline import (
    check_results,
    materialize_segments,
    materialize_wave,
    read_table,
    table_exists,
)

# Whole waves through the Azure double and Dagster: `pytest -m "not e2e"` skips them.
pytestmark = pytest.mark.e2e

TABLES = ("retrieved_content", "message_variants", "safety_verdicts", "customer_segments", "assignments",
          "personalized_messages", "engagement", "experiment_results", "rollout_recommendation")
SERVICE_ASSETS = {"search": ("content_index", "retrieved_content"), "openai": ("message_variants",), "safety": ("screened_corpus", "safety_verdicts")}
KEYS = {"openai": OPENAI_KEY, "search": SEARCH_KEY, "safety": SAFETY_KEY}


def segment_ids(defs: dg.Definitions) -> list[str]:
    return defs.resolve_job_def("campaign_content").partitions_def.get_partition_keys()


def run_wave(defs: dg.Definitions, instance: dg.DagsterInstance) -> tuple[dg.ExecuteInProcessResult, dg.ExecuteInProcessResult]:
    content = materialize_segments(defs, instance, segment_ids(defs))
    wave = materialize_wave(defs, instance, TEST_WAVE)
    return content, wave


def asset_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    """Each asset's output metadata (a single-run backfill repeats it on every partition: taken once)."""
    found: dict[str, dict] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        found.setdefault(materialization.asset_key.to_user_string(), {k: v.value for k, v in materialization.metadata.items()})
    return found


def successful(double, service, operation):
    return [r for r in double.recorded(service, operation) if 200 <= r.status < 300]


def canary_customers(folder: CampaignFolder) -> pd.DataFrame:
    """Replace every name, email and location with a unique value that cannot occur by chance.

    The sample's own cities (Bend, Calgary, Portland) are legitimately in the approved content,
    so they cannot tell a leak from a quote; unique canaries can.
    """
    path = folder.data / "customers.csv"
    customers = pd.read_csv(path, dtype=str, keep_default_na=False)
    numbers = [f"{i:05d}" for i in range(len(customers))]
    customers["first_name"] = [f"Piiname{n}" for n in numbers]
    customers["email"] = [f"pii.canary{n}@canary-mail.example" for n in numbers]
    customers["location"] = [f"Piitown{n}" for n in numbers]
    customers.to_csv(path, index=False)
    return customers


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()} {record.args!r}")


@dataclass
class WaveRun:
    folder: CampaignFolder
    double: AzureDouble
    customers: pd.DataFrame
    defs: dg.Definitions
    local_warehouse: Path
    content: dg.ExecuteInProcessResult
    wave: dg.ExecuteInProcessResult
    events: str
    run_configs: str
    logs: str

    @property
    def warehouse(self) -> Path:
        return self.folder.warehouse


@pytest.fixture(scope="module")
def azure_wave(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WaveRun]:
    """The sample campaign (with canary customers) run twice: embedded, then through the Azure double."""
    root = tmp_path_factory.mktemp("azure-wave")
    write_sample_data(root / "data", n_customers=TEST_CUSTOMERS, copy_prompts=False)
    shutil.copytree(PROJECT_ROOT / "prompts", root / "prompts")
    home = root / "home"
    (home / "dagster").mkdir(parents=True)
    folder = CampaignFolder(root)
    customers = canary_customers(folder)
    patch = pytest.MonkeyPatch()
    double = AzureDouble(openai_key=OPENAI_KEY, search_key=SEARCH_KEY, safety_key=SAFETY_KEY).start()
    capture = _Capture()
    loggers = [logging.getLogger(), logging.getLogger("dagster"), logging.getLogger("openai"), logging.getLogger("azure")]
    levels = [logger.level for logger in loggers]
    try:
        patch.setenv("CPO_HOME", str(home))
        patch.setenv("DAGSTER_HOME", str(home / "dagster"))
        for name in BACKEND_VARIABLES:
            patch.delenv(name, raising=False)
        local_warehouse = home / "embedded.duckdb"
        local = campaign_definitions(folder.campaign, warehouse=local_warehouse)
        local_content, local_wave = run_wave(local, dg.DagsterInstance.ephemeral())
        assert local_content.success and local_wave.success
        assert not double.requests  # the embedded run never touched the network

        point_at_double(patch, double)
        for logger in loggers:
            logger.addHandler(capture)
            logger.setLevel(logging.DEBUG)
        defs = campaign_definitions(folder.campaign, warehouse=folder.warehouse)
        with dg.DagsterInstance.local_temp(tempdir=str(home / "dagster")) as instance:
            content, wave = run_wave(defs, instance)
            runs = instance.get_runs()
            events = "\n".join(repr(record) for run in runs for record in instance.all_logs(run.run_id))
            run_configs = "\n".join(repr(run.run_config) + repr(run.tags) for run in runs)
        yield WaveRun(folder, double, customers, defs, local_warehouse, content, wave, events, run_configs, "\n".join(capture.lines))
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(capture)
            logger.setLevel(level)
        double.stop()
        patch.undo()


def test_whole_wave_through_the_azure_backends(azure_wave):
    run, double = azure_wave, azure_wave.double
    assert type(run.defs.resources["generator"]).__name__ == "AzureOpenAIGenerator"
    assert run.content.success and run.wave.success
    assert check_results(run.content)["safety_pass_rate"].passed and check_results(run.wave)["sample_ratio_mismatch"].passed

    # Identical in shape to the embedded run: same tables, columns, types, rows and keys.
    for table in TABLES:
        ours, theirs = read_table(run.warehouse, table), read_table(run.local_warehouse, table)
        assert list(ours.columns) == list(theirs.columns), table
        assert ours.dtypes.astype(str).tolist() == theirs.dtypes.astype(str).tolist(), table
        assert len(ours) == len(theirs), table
    for table, key in [("message_variants", ["segment", "variant_id"]), ("safety_verdicts", ["segment", "variant_id"]),
                       ("retrieved_content", ["segment", "purpose", "rank", "document_id"]),
                       ("experiment_results", ["scope", "metric", "arm"]), ("assignments", ["customer_id", "segment", "arm"])]:
        ours = read_table(run.warehouse, table)[key].sort_values(key).reset_index(drop=True)
        theirs = read_table(run.local_warehouse, table)[key].sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)  # Azure AI Search ranks with BM25 too

    # Every variant generated by Azure OpenAI and screened by Azure AI Content Safety.
    variants = read_table(run.warehouse, "message_variants")
    assert set(variants["backend"]) == {"azure-openai"} and set(variants["model"]) == {DEFAULT_MODEL}
    assert (variants["refusal"] == "").all() and (variants["citations"] != "").all()
    assert (variants["validation_failures"] == "").all() and variants["repair_attempts"].sum() == 0
    assert variants["cost_usd"].sum() > 0
    verdicts = read_table(run.warehouse, "safety_verdicts")
    assert set(verdicts["backend"]) == {"azure-content-safety"} and set(verdicts["decision"]) == {"approved"}
    assert set(read_table(run.warehouse, "retrieved_content")["backend"]) == {"azure-search"}
    analyzed = {r.json()["text"] for r in successful(double, "safety", "analyze")}
    for variant in variants.itertuples():
        assert set(texts_to_screen(variant.subject, variant.body)) <= analyzed, variant.variant_id
    assert set(double.blocklists) == {"competitor_names", "banned_claims"}
    metadata = asset_metadata(run.content)
    assert metadata["content_index"]["index_documents"] == metadata["content_index"]["dagster/row_count"]
    assert metadata["message_variants"]["service_retries"] == 0


def test_generation_costs_segments_times_tones_plus_one_calls_and_a_rerun_none(azure_wave):
    run, double = azure_wave, azure_wave.double
    segments = segment_ids(run.defs)
    variants = read_table(run.warehouse, "message_variants")
    tones = variants["tone"].dropna().nunique()
    assert len(variants) == len(segments) * (tones + 1)
    calls = len(segments) * tones + 1  # the control request is the same for every segment
    assert len(double.recorded("openai", "chat")) == calls
    assert asset_metadata(run.content)["message_variants"]["service_calls"] == calls

    # Cache: materializing the unchanged campaign again makes zero generation requests.
    again = materialize_segments(run.defs, dg.DagsterInstance.ephemeral(), segments)
    assert again.success
    assert len(double.recorded("openai", "chat")) == calls
    cached = asset_metadata(again)["message_variants"]
    assert cached["service_cache_hits"] == calls and "service_calls" not in cached and cached["cost_usd"] == 0.0
    rerun = read_table(run.warehouse, "message_variants").sort_values(["segment", "variant_id"]).reset_index(drop=True)
    before = variants.sort_values(["segment", "variant_id"]).reset_index(drop=True)
    pd.testing.assert_series_equal(rerun["body"], before["body"])


def test_throttling_and_server_errors_lose_and_duplicate_nothing(campaign_folder, azure_env, monkeypatch):
    double = azure_env
    point_at_double(monkeypatch, double, CPO_RETRY_MAX_ATTEMPTS="12", CPO_RETRY_MAX_BACKOFF_SECONDS="0.005")
    double.inject("429", rate=0.15)  # 30% throttled: half with a bare 429,
    double.inject("429", rate=0.15, retry_after_ms=5, retry_after=1)  # half telling us when to come back
    double.inject("500", rate=0.10)
    defs = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    content, wave = run_wave(defs, dg.DagsterInstance.ephemeral())
    assert content.success and wave.success

    faults = Counter((r.service, r.fault) for r in double.requests if r.fault)
    assert faults[("openai", "429")] and faults[("openai", "500")] and faults[("search", "429")] and faults[("safety", "429")]
    total = len(double.requests)
    assert 0.3 < sum(faults.values()) / total < 0.5, faults

    # Retries in metadata: exactly one per injected failure, per service.
    metadata = asset_metadata(content)
    for service, assets in SERVICE_ASSETS.items():
        injected = sum(n for (s, _), n in faults.items() if s == service)
        assert sum(metadata[a]["service_retries"] for a in assets) == injected, service
        assert sum(metadata[a]["service_requests"] for a in assets) == len(double.recorded(service)), service
        by_status = {status: sum(metadata[a].get(f"service_retries_{status}", 0) for a in assets) for status in ("429", "500")}
        assert by_status == {status: faults[(service, status)] for status in ("429", "500")}, service

    # Nothing lost, nothing duplicated.
    segments = segment_ids(defs)
    variants = read_table(campaign_folder.warehouse, "message_variants")
    assert len(variants) == 4 * len(segments) and not variants.duplicated(["segment", "variant_id"]).any()
    assert (variants["refusal"] == "").all()
    assert len(successful(double, "openai", "chat")) == 3 * len(segments) + 1  # each email generated once
    verdicts = read_table(campaign_folder.warehouse, "safety_verdicts")
    assert set(verdicts["decision"]) == {"approved"} and len(verdicts) == len(variants)
    texts = {t for v in variants.itertuples() for t in texts_to_screen(v.subject, v.body)}
    corpus = read_table(campaign_folder.warehouse, "screened_corpus")  # documents are screened when indexed
    texts |= {t for d in corpus.itertuples() for t in texts_to_screen(d.title, d.content)}
    assert sorted(r.json()["text"] for r in successful(double, "safety", "analyze")) == sorted(texts)  # each once
    corpus = read_table(campaign_folder.warehouse, "content_index")
    assert set(double.indexes[SEARCH_INDEX].documents) == set(corpus["document_id"])
    stored = {name: sorted(i["text"] for i in b["items"].values()) for name, b in double.blocklists.items()}
    assert stored == {"competitor_names": ["Fjellhaus", "Southpaw Gear", "TrailKing"],
                      "banned_claims": sorted(["miracle", "cure", "risk-free", "no risk", "guaranteed results", "lifetime guarantee"])}
    assert len(read_table(campaign_folder.warehouse, "assignments")) == len(read_table(campaign_folder.warehouse, "customer_segments"))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_throttling_with_the_default_retry_budget_blocks_no_variant(campaign_folder, azure_env, monkeypatch, seed):
    """30% 429 (half with Retry-After) and 10% 500 on every service, at the default attempts and
    budget (only the backoff shortened for the test): every variant is generated and screened."""
    double = azure_env
    double.seed = seed
    point_at_double(monkeypatch, double, CPO_RETRY_MAX_BACKOFF_SECONDS="0.005")
    monkeypatch.delenv("CPO_RETRY_MAX_ATTEMPTS", raising=False)
    double.inject("429", rate=0.15)
    double.inject("429", rate=0.15, retry_after_ms=5, retry_after=1)
    double.inject("500", rate=0.10)
    defs = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    content = materialize_segments(defs, dg.DagsterInstance.ephemeral(), segment_ids(defs))
    assert content.success
    faults = sum(1 for r in double.requests if r.fault)
    assert faults > 0.25 * len(double.requests)
    variants = read_table(campaign_folder.warehouse, "message_variants")
    verdicts = read_table(campaign_folder.warehouse, "safety_verdicts")
    assert (variants["refusal"] == "").all()
    assert set(verdicts["decision"]) == {"approved"}, verdicts.loc[verdicts["decision"] != "approved", "reasons"].tolist()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def step_failure(result, step: str) -> str:
    """The error message of a failed step of a run."""
    for event in result.all_events:
        if event.is_step_failure and event.step_key == step:
            return event.step_failure_data.error.message
    return ""


@pytest.mark.parametrize("outage", ["503", "connection refused"])
def test_safety_service_down_blocks_everything_and_nothing_is_sent(campaign_folder, azure_env, monkeypatch, outage):
    double = azure_env
    if outage == "503":
        double.inject("503", service="safety")
    else:
        monkeypatch.setenv("AZURE_CONTENT_SAFETY_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("CPO_RETRY_MAX_ATTEMPTS", "2")
    defs = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    instance = dg.DagsterInstance.ephemeral()
    content = materialize_segments(defs, instance, segment_ids(defs))
    wave = materialize_wave(defs, instance, TEST_WAVE)

    assert not double.recorded("safety", "analyze")  # no text was judged by a service that is down
    # Fail closed, from the first text screened: no document is indexed, so no variant is written.
    assert not content.success and "the safety service failed on all" in step_failure(content, "screened_corpus")
    for table in ("content_index", "message_variants", "safety_verdicts", "assignments", "personalized_messages"):
        assert not table_exists(campaign_folder.warehouse, table), table
    assert not wave.success


def test_content_filter_refusal_and_unsafe_verdict_block_their_variants(campaign_folder, azure_env):
    double = azure_env
    double.inject("content-filter", match="Tone: urgent", times=1)
    double.inject("unsafe", match="We thought you would enjoy this", times=1, category="Violence", severity=6)
    defs = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    content = materialize_segments(defs, dg.DagsterInstance.ephemeral(), segment_ids(defs))

    variants = read_table(campaign_folder.warehouse, "message_variants")
    refused = variants[variants["refusal"] != ""]
    assert len(refused) == 1 and refused["refusal"].iloc[0].startswith("content_filter: The response was filtered")
    assert refused["variant_id"].iloc[0].endswith(":urgent")
    verdicts = read_table(campaign_folder.warehouse, "safety_verdicts").set_index("variant_id")
    assert verdicts.loc[refused["variant_id"].iloc[0], "decision"] == "blocked"
    assert "generation_refused" in verdicts.loc[refused["variant_id"].iloc[0], "rule_hits"]
    unsafe = verdicts[verdicts["violence"] == 6]
    assert len(unsafe) == 1 and unsafe.index[0].endswith(":friendly") and unsafe["decision"].iloc[0] == "blocked"
    assert "Violence severity 6 >= 4" in unsafe["reasons"].iloc[0]
    # Two of 19 blocked: below the 90% gate, so nobody is assigned anything (nobody is sent a blocked variant).
    assert not check_results(content)["safety_pass_rate"].passed


# -------------------------------------------------------------------------------------------
# PII and secrets
# -------------------------------------------------------------------------------------------


def read_parquet(path: Path) -> pd.DataFrame:
    with duckdb.connect() as connection:
        return connection.execute("SELECT * FROM read_parquet(?)", [str(path)]).df()


def warehouse_text(database: Path) -> str:
    parts = []
    with DuckDBWarehouse(database).reader() as connection:
        tables = connection.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [SCHEMA]).fetchall()
        for (table,) in tables:
            parts.append(connection.execute(f"SELECT * FROM {SCHEMA}.{table}").df().astype(str).to_csv(index=False))
    return "\n".join(parts)


def _stored_text(home: Path, warehouse: Path) -> str:
    """Everything a run leaves behind as text: warehouse tables, audit trail, Dagster's storage."""
    files = [path.read_bytes().decode("utf-8", "replace") for path in home.rglob("*")
             if path.is_file() and path.suffix != ".duckdb" and path.stat().st_size < 50_000_000]
    return (warehouse_text(warehouse) if warehouse.exists() else "") + "\n".join(files)


@pytest.mark.parametrize("service", ["search", "openai", "safety"])
def test_a_server_that_echoes_the_key_never_gets_it_stored(campaign_folder, azure_env, service, capfd):
    """A 401 whose message quotes the key (whole and masked) fails or blocks as any failure does,
    and the key is in no table, audit record, Dagster run or event, or printed log."""
    double = azure_env
    double.inject("401-echo", service=service, times=1)
    defs = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    (campaign_folder.root / "home" / "dagster").mkdir()
    with dg.DagsterInstance.local_temp(tempdir=str(campaign_folder.root / "home" / "dagster")) as instance:
        content = materialize_segments(defs, instance, segment_ids(defs))
        events = "\n".join(repr(record) for run in instance.get_runs() for record in instance.all_logs(run.run_id))
    assert any(r.status == 401 for r in double.recorded(service))
    key = {"search": SEARCH_KEY, "openai": OPENAI_KEY, "safety": SAFETY_KEY}[service]
    stored = _stored_text(campaign_folder.root / "home", campaign_folder.warehouse) + events + "\n".join(capfd.readouterr())
    for echo in (key, key[:10], key[-8:]):
        assert echo not in stored, echo
    assert "[redacted]" in stored  # the failure itself is still told
    if service == "search":
        assert not content.success  # no index, no retrieval: the run stops at content_index
        assert "ServiceError" in events and "Incorrect API key provided: [redacted]" in events
    elif service == "openai":  # the refused variant says why, and is blocked as refused
        variants = read_table(campaign_folder.warehouse, "message_variants")
        refused = variants[variants["refusal"] != ""]
        # One request refused: one variant (the control is one request for every segment).
        assert refused["variant_id"].nunique() == 1 and "Incorrect API key provided: [redacted]" in refused["refusal"].iloc[0]
        verdicts = read_table(campaign_folder.warehouse, "safety_verdicts").set_index("variant_id")
        assert (verdicts.loc[[refused["variant_id"].iloc[0]], "decision"] == "blocked").all()
    else:  # the first screen is the documents' (the blocklist sync is refused): nothing indexed, and it says why
        assert not content.success and not table_exists(campaign_folder.warehouse, "content_index")
        assert "safety service failed on all" in events and "Incorrect API key provided: [redacted]" in events


def test_no_customer_value_in_any_request(azure_wave):
    run, double = azure_wave, azure_wave.double
    # The canaries went all the way through: the send list addresses them, the rendered emails
    # (filled in locally) greet them by name.
    send_list = read_table(run.warehouse, "personalized_messages")
    assert len(send_list) > TEST_CUSTOMERS // 2 and send_list["email"].str.endswith("@canary-mail.example").all()
    rendered = list((run.folder.root / "home").rglob("*.parquet"))
    bodies = pd.concat([read_parquet(path) for path in rendered]) if rendered else send_list
    if "body" in bodies.columns:
        assert bodies["body"].str.contains("Hi Piiname", regex=False).all()

    assert {r.service for r in double.requests} == {"openai", "search", "safety"}
    wire = "\n".join(r.transcript for r in double.requests)  # request lines, queries, headers and bodies
    for marker in ("Piiname", "Piitown", "canary-mail", "pii.canary"):
        assert marker not in wire
    leaked = [
        (row.customer_id, value)
        for row in run.customers.itertuples()
        for value in (row.customer_id, row.first_name, row.email, row.location)
        if value in wire
    ]
    assert not leaked, leaked[:5]


def test_keys_only_in_their_own_request_headers(azure_wave):
    run, double = azure_wave, azure_wave.double
    for record in double.requests:
        for service, key in KEYS.items():
            in_headers = any(key in value for value in record.headers.values())
            assert in_headers == (service == record.service), (record.service, record.path, service)
            assert key not in record.text and key not in record.path

    home = run.folder.root / "home"
    outputs = {
        "warehouse": warehouse_text(run.warehouse),
        "event log and metadata": run.events,
        "run config and tags": run.run_configs,
        "logs": run.logs,
    }
    files = [p for p in home.rglob("*") if p.is_file() and p.suffix != ".duckdb"]
    names = {p.relative_to(home).parts[0] for p in files}
    assert {"reports", "audit", "cache", "dagster"} <= names, names  # the report, audit trail, cache, instance
    for path in files:
        if path.suffix == ".parquet":  # compressed: read it as a table
            outputs[str(path.relative_to(home))] = read_parquet(path).astype(str).to_csv(index=False)
        else:
            outputs[str(path.relative_to(home))] = path.read_bytes().decode("utf-8", errors="replace")
    assert len(run.logs) > 1000 and "api-key" in run.logs.lower()  # the SDKs logged requests, keys redacted
    for where, text in outputs.items():
        for key in KEYS.values():
            assert key not in text, f"a key appears in {where}"
