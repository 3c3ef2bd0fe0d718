"""The loopback Azure double, started and stopped per test, and the environment that points at it."""

from collections.abc import Iterator

import pytest

from personalization_assets_tests.azure_double import AzureDouble

# Distinctive values, so a test can look for them anywhere they must not be.
OPENAI_KEY = "sk-canary-openai-5c1f0e9b7a3d"
SEARCH_KEY = "canary-search-admin-key-8e2b44d1"
SAFETY_KEY = "canary-safety-key-3a9d0c6f27"
DEPLOYMENT = "gpt-4o-mini-prod"
API_VERSION = "2024-10-21"
SEARCH_INDEX = "cpo-test-content"
# Every variable that selects a backend: cleared first, so the developer's own shell cannot leak in.
BACKEND_VARIABLES = (
    "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_DEPLOYMENT", "OPENAI_API_VERSION", "AZURE_OPENAI_AD_TOKEN",
    "OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL", "AZURE_SEARCH_ENDPOINT", "AZURE_SEARCH_API_KEY",
    "AZURE_SEARCH_INDEX", "AZURE_CONTENT_SAFETY_ENDPOINT", "AZURE_CONTENT_SAFETY_KEY", "CPO_MAX_CONCURRENCY",
    "CPO_RETRY_MAX_ATTEMPTS", "CPO_RETRY_MAX_BACKOFF_SECONDS", "CPO_HTTP_TIMEOUT_SECONDS", "CPO_GENERATION_CACHE",
    "CPO_RETRY_BUDGET_SECONDS",
)


@pytest.fixture
def azure_double() -> Iterator[AzureDouble]:
    double = AzureDouble(openai_key=OPENAI_KEY, search_key=SEARCH_KEY, safety_key=SAFETY_KEY).start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
def clean_backend_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in BACKEND_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def point_at_double(monkeypatch: pytest.MonkeyPatch, double: AzureDouble, *, roles=("generator", "search", "safety"), **tuning: str) -> None:
    """Environment variables selecting the Azure backends on the double, with quick retries."""
    if "generator" in roles:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", double.url)
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", OPENAI_KEY)
        monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT", DEPLOYMENT)
        monkeypatch.setenv("OPENAI_API_VERSION", API_VERSION)
    if "search" in roles:
        monkeypatch.setenv("AZURE_SEARCH_ENDPOINT", double.url)
        monkeypatch.setenv("AZURE_SEARCH_API_KEY", SEARCH_KEY)
        monkeypatch.setenv("AZURE_SEARCH_INDEX", SEARCH_INDEX)
    if "safety" in roles:
        monkeypatch.setenv("AZURE_CONTENT_SAFETY_ENDPOINT", double.url)
        monkeypatch.setenv("AZURE_CONTENT_SAFETY_KEY", SAFETY_KEY)
    settings = {"CPO_RETRY_MAX_BACKOFF_SECONDS": "0.02", "CPO_HTTP_TIMEOUT_SECONDS": "10", **tuning}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def azure_env(azure_double: AzureDouble, clean_backend_env: pytest.MonkeyPatch) -> AzureDouble:
    """All three roles on the double."""
    point_at_double(clean_backend_env, azure_double)
    return azure_double
