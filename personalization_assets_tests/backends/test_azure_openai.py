"""Generation through `openai.AzureOpenAI` and `openai.OpenAI(base_url=...)` against the loopback double."""

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import pytest

from personalization_assets.backends.azure_openai import (
    AZURE_OPENAI_BACKEND,
    ChatGenerator,
    ChatSettings,
    azure_client,
    completion_function,
    cost_usd,
    price_per_million,
)
from personalization_assets.backends.cache import ResponseCache
from personalization_assets.backends.retry import RetryPolicy, ServiceStats
from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets.defs.resources import (
    AzureOpenAIGenerator,
    OpenAICompatibleGenerator,
)
from personalization_assets_tests.azure_double import DEFAULT_MODEL
from personalization_assets_tests.backends.conftest import (
    API_VERSION,
    DEPLOYMENT,
    OPENAI_KEY,
)
from personalization_assets_tests.backends.support import campaign_requests

REQUESTS = campaign_requests()
UNIQUE = len({r.prompt_sha256 for r in REQUESTS})


def azure_generator(double, tmp_path, **options) -> AzureOpenAIGenerator:
    settings = {"max_backoff_seconds": 0.01, "cache_dir": str(tmp_path / "cache"), **options}
    return AzureOpenAIGenerator(endpoint=double.url, api_key=OPENAI_KEY, deployment=DEPLOYMENT, api_version=API_VERSION, **settings)


def chat_requests(double, status=None):
    return [r for r in double.recorded("openai", "chat") if status is None or r.status == status]


def test_the_request_on_the_wire_and_the_variant_it_becomes(azure_double, tmp_path):
    requests = REQUESTS[:4]
    variants = azure_generator(azure_double, tmp_path).generate(requests)

    sent = chat_requests(azure_double)
    assert len(sent) == 4
    for record in sent:
        assert record.method == "POST"
        assert record.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
        assert record.query == {"api-version": [API_VERSION]}
        assert record.headers["api-key"] == OPENAI_KEY
        assert "authorization" not in record.headers
    bodies = sorted((r.json() for r in sent), key=lambda b: json.dumps(b["messages"]))
    expected = sorted(([dict(m) for m in q.messages] for q in requests), key=json.dumps)
    assert [b["messages"] for b in bodies] == expected  # exactly the rendered messages, nothing added
    assert all(b["response_format"] == {"type": "json_object"} for b in bodies)

    prices = price_per_million(DEFAULT_MODEL)
    assert prices == (0.15, 0.60)  # gpt-4o-mini, not gpt-4o
    for request, variant in zip(requests, variants, strict=True):
        assert variant.refusal is None
        assert variant.backend == AZURE_OPENAI_BACKEND and variant.model == DEFAULT_MODEL
        assert variant.body.startswith("Hi {{first_name}},") and variant.subject and variant.cta
        assert set(variant.citations) <= {d.document_id for d in request.documents} and variant.citations
        assert variant.input_tokens > 0 and variant.output_tokens > 0
        assert variant.cost_usd == pytest.approx(cost_usd(variant.input_tokens, variant.output_tokens, prices))


def test_a_repair_conversation_is_sent_as_given(azure_double, tmp_path):
    request = REQUESTS[1]
    turns = (*request.messages, {"role": "assistant", "content": '{"subject": "x"}'},
             {"role": "user", "content": "Your previous answer broke these rules: body_length. Answer with JSON."})
    azure_generator(azure_double, tmp_path).generate([replace(request, messages=turns)])
    assert chat_requests(azure_double)[0].json()["messages"] == [dict(m) for m in turns]


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("content-filter", "content_filter: The response was filtered"),
        ("content-filter-finish", "content_filter: the service filtered the generated email"),
        ("not-json", "malformed model output: not JSON"),
    ],
)
def test_refusals_and_unreadable_answers_become_refused_variants(azure_double, tmp_path, kind, reason):
    azure_double.inject(kind, times=1)
    generator = azure_generator(azure_double, tmp_path)
    [variant] = generator.generate([REQUESTS[1]])
    assert variant.refusal is not None and variant.refusal.startswith(reason)
    assert (variant.subject, variant.body, variant.citations) == ("", "", ())
    assert len(chat_requests(azure_double)) == 1  # a refusal is an answer, not a retryable failure
    # Refusals are not cached: the next run asks again (and here gets an email).
    [again] = azure_generator(azure_double, tmp_path).generate([REQUESTS[1]])
    assert again.refusal is None and len(chat_requests(azure_double)) == 2


def test_transient_failures_are_retried_honouring_retry_after(azure_double):
    for kind, options in [("429", {"retry_after_ms": 1500}), ("429", {"retry_after": 3}), ("429", {}), ("503", {}),
                          ("500", {}), ("malformed", {}), ("drop", {}), ("timeout", {"seconds": 1.0})]:
        azure_double.inject(kind, times=1, **options)
    waits: list[float] = []
    stats = ServiceStats()
    client = azure_client(endpoint=azure_double.url, api_key=OPENAI_KEY, api_version=API_VERSION, deployment=DEPLOYMENT, timeout=0.5)
    generator = ChatGenerator(completion_function(client), ChatSettings(AZURE_OPENAI_BACKEND, DEPLOYMENT),
                              policy=RetryPolicy(max_attempts=10, base_backoff=0.01, max_backoff=0.02), stats=stats,
                              cache=None, max_concurrency=1, sleep=waits.append)
    [variant] = generator.generate([REQUESTS[1]])

    assert variant.refusal is None
    azure_double.wait_idle()  # the timed-out attempt is still held by the double
    sent = chat_requests(azure_double)
    # Recorded when answered: the timed-out attempt is answered (to nobody) after the retry succeeded.
    assert sorted(str(r.fault) for r in sent) == sorted(["429", "429", "429", "503", "500", "malformed", "drop", "timeout", "None"])
    assert [r.fault for r in sent[:3]] == ["429", "429", "429"] and sent[0].status == 429
    assert 1.5 <= waits[0] <= 1.65  # retry-after-ms honoured
    assert 3.0 <= waits[1] <= 3.31  # Retry-After in seconds honoured
    assert all(wait <= 0.02 for wait in waits[2:])  # no header: capped backoff with jitter
    counts = stats.snapshot()
    assert counts["requests"] == 9 and counts["retries"] == 8
    assert (counts["retries_429"], counts["retries_503"], counts["retries_500"]) == (3, 1, 1)
    assert (counts["retries_malformed"], counts["retries_connection"], counts["retries_timeout"]) == (1, 1, 1)


def test_a_call_that_keeps_failing_is_a_refusal_saying_why(azure_double, tmp_path):
    azure_double.inject("500", rate=1.0)
    [variant] = azure_generator(azure_double, tmp_path, max_attempts=3).generate([REQUESTS[1]])
    assert variant.refusal.startswith("generation failed: azure-openai chat completion: gave up after 3 attempts, last failure 500")
    assert len(chat_requests(azure_double)) == 3


def test_wrong_key_is_refused_without_retrying_and_without_echoing_the_key(azure_double, tmp_path):
    generator = AzureOpenAIGenerator(endpoint=azure_double.url, api_key="wrong-key-123", deployment=DEPLOYMENT,
                                     api_version=API_VERSION, cache_dir=str(tmp_path))
    [variant] = generator.generate([REQUESTS[1]])
    assert "AuthenticationError" in variant.refusal and "wrong-key-123" not in variant.refusal
    assert len(chat_requests(azure_double)) == 1


def test_cache_and_duplicates_a_rerun_sends_nothing(azure_double, tmp_path):
    first = azure_generator(azure_double, tmp_path)
    variants = first.generate(REQUESTS)
    assert len(chat_requests(azure_double)) == UNIQUE  # the control request is identical for every segment: sent once
    assert first.service_stats()["duplicates"] == len(REQUESTS) - UNIQUE
    assert len(ResponseCache(tmp_path / "cache")) == UNIQUE
    paid = sum(v.cost_usd for v in variants)
    assert paid > 0 and sum(v.cost_usd > 0 for v in variants) == UNIQUE  # each answer paid once

    second = azure_generator(azure_double, tmp_path)
    again = second.generate(REQUESTS)
    assert len(chat_requests(azure_double)) == UNIQUE  # zero new requests
    assert second.service_stats()["cache_hits"] == UNIQUE and second.service_stats().get("calls", 0) == 0
    assert [(v.subject, v.body, v.citations, v.model) for v in again] == [(v.subject, v.body, v.citations, v.model) for v in variants]
    assert sum(v.cost_usd for v in again) == 0 and sum(v.input_tokens for v in again) == 0

    # Any change to the request (here the temperature) is a different key: asked again.
    azure_generator(azure_double, tmp_path, temperature=0.2).generate(REQUESTS[:1])
    assert len(chat_requests(azure_double)) == UNIQUE + 1


KILLABLE_RUN = textwrap.dedent(
    """
    import os, pickle, sys
    from personalization_assets.backends.azure_openai import *
    from personalization_assets.backends.cache import ResponseCache
    from personalization_assets.backends.retry import RetryPolicy, ServiceStats
    requests = pickle.load(open(sys.argv[1], "rb"))
    client = azure_client(endpoint=os.environ["DOUBLE_URL"], api_key=os.environ["DOUBLE_KEY"], api_version=sys.argv[4],
                          deployment=sys.argv[3], timeout=10)
    ChatGenerator(completion_function(client), ChatSettings(AZURE_OPENAI_BACKEND, sys.argv[3]), policy=RetryPolicy(),
                  stats=ServiceStats(), cache=ResponseCache(sys.argv[2]), max_concurrency=1).generate(requests)
    """
)


def test_a_run_killed_half_way_pays_only_for_what_is_missing(azure_double, tmp_path):
    azure_double.latency = 0.15
    (tmp_path / "requests.pickle").write_bytes(pickle.dumps(REQUESTS))
    cache = ResponseCache(tmp_path / "cache")
    environment = {**os.environ, "DOUBLE_URL": azure_double.url, "DOUBLE_KEY": OPENAI_KEY, "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_RUN, str(tmp_path / "requests.pickle"), str(cache.directory), DEPLOYMENT, API_VERSION],
        env=environment,
    )
    try:
        deadline = time.monotonic() + 60
        while len(cache) < 5 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    kept = len(cache)
    assert 5 <= kept < UNIQUE, kept
    azure_double.wait_idle()  # the killed run's last request may still be in the double's hands
    azure_double.latency = 0.0
    azure_double.reset_records()

    variants = azure_generator(azure_double, tmp_path).generate(REQUESTS)
    assert len(chat_requests(azure_double)) == UNIQUE - kept  # only what the killed run had not stored
    assert all(v.refusal is None for v in variants)
    assert len(cache) == UNIQUE


def test_openai_compatible_server(azure_double, tmp_path):
    azure_double.compatible_key = "local-server-token"
    generator = OpenAICompatibleGenerator(base_url=f"{azure_double.url}/v1", model="llama3.1:8b", api_key="local-server-token",
                                          cache_dir=str(tmp_path))
    [variant] = generator.generate([REQUESTS[2]])
    [record] = chat_requests(azure_double)
    assert record.path == "/v1/chat/completions" and record.headers["authorization"] == "Bearer local-server-token"
    assert "api-key" not in record.headers
    body = record.json()
    assert body["model"] == "llama3.1:8b" and body["response_format"] == {"type": "json_object"}
    assert variant.backend == "openai-compatible" and variant.model == "llama3.1:8b"
    assert variant.refusal is None and variant.cost_usd == 0.0 and variant.input_tokens > 0


def test_price_table():
    assert price_per_million("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert price_per_million("GPT-4o-mini") == (0.15, 0.60)
    assert price_per_million("gpt-4.1-mini-2025-04-14") == (0.40, 1.60)
    assert price_per_million("llama3.1:8b") is None
    assert cost_usd(1_000_000, 1_000_000, (0.15, 0.60)) == pytest.approx(0.75)
    assert cost_usd(10, 10, None) == 0.0
