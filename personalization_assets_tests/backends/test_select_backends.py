"""Each service role chosen on its own by environment variables; secrets only as `dagster.EnvVar`."""

import dagster as dg
import pytest

from personalization_assets.campaign.errors import ConfigError
from personalization_assets.definitions import campaign_definitions
from personalization_assets.defs.resources import (
    AzureAISearch,
    AzureContentSafety,
    AzureOpenAIGenerator,
    LocalBM25Search,
    LocalSafety,
    LocalTemplateGenerator,
    OpenAICompatibleGenerator,
    select_backends,
)

AZURE_OPENAI = {"AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com", "AZURE_OPENAI_API_KEY": "k1",
                "AZURE_OPENAI_DEPLOYMENT": "gpt-4o-mini", "OPENAI_API_VERSION": "2024-10-21"}
SEARCH = {"AZURE_SEARCH_ENDPOINT": "https://s.search.windows.net", "AZURE_SEARCH_API_KEY": "k2"}
SAFETY = {"AZURE_CONTENT_SAFETY_ENDPOINT": "https://cs.cognitiveservices.azure.com", "AZURE_CONTENT_SAFETY_KEY": "k3"}


def kinds(resources):
    return {role: type(resource) for role, resource in resources.items()}


def test_nothing_set_means_the_embedded_defaults():
    assert kinds(select_backends({})) == {"generator": LocalTemplateGenerator, "search": LocalBM25Search, "safety": LocalSafety}
    assert kinds(select_backends({"AZURE_OPENAI_ENDPOINT": "  ", "OPENAI_API_KEY": "only-a-key"}))["generator"] is LocalTemplateGenerator


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        (AZURE_OPENAI, {"generator": AzureOpenAIGenerator, "search": LocalBM25Search, "safety": LocalSafety}),
        (SEARCH, {"generator": LocalTemplateGenerator, "search": AzureAISearch, "safety": LocalSafety}),
        (SAFETY, {"generator": LocalTemplateGenerator, "search": LocalBM25Search, "safety": AzureContentSafety}),
        ({**SEARCH, **SAFETY, "OPENAI_BASE_URL": "http://localhost:11434/v1", "OPENAI_MODEL": "llama3.1"},
         {"generator": OpenAICompatibleGenerator, "search": AzureAISearch, "safety": AzureContentSafety}),
    ],
)
def test_each_role_on_its_own(environment, expected):
    assert kinds(select_backends(environment)) == expected


def test_keys_are_env_vars_and_settings_come_through():
    resources = select_backends({**AZURE_OPENAI, **SEARCH, **SAFETY, "AZURE_SEARCH_INDEX": "idx", "CPO_RETRY_MAX_ATTEMPTS": "9",
                                 "CPO_GENERATION_CACHE": "off"}, max_concurrency=7)
    generator, search, safety = resources["generator"], resources["search"], resources["safety"]
    for resource, variable in ((generator, "AZURE_OPENAI_API_KEY"), (search, "AZURE_SEARCH_API_KEY"), (safety, "AZURE_CONTENT_SAFETY_KEY")):
        assert isinstance(resource.api_key, dg.EnvVar) and resource.api_key.env_var_name == variable
        assert resource.max_concurrency == 7 and resource.max_attempts == 9
    assert generator.deployment == "gpt-4o-mini" and generator.api_version == "2024-10-21" and generator.use_cache is False
    assert search.index_name == "idx"
    compatible = select_backends({"OPENAI_BASE_URL": "http://localhost:11434/v1", "OPENAI_MODEL": "llama3.1"})["generator"]
    assert compatible.api_key == "not-needed"  # Ollama needs no key; none is invented from the environment


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"AZURE_OPENAI_ENDPOINT": "https://x"}, "AZURE_OPENAI_API_KEY, AZURE_OPENAI_DEPLOYMENT, OPENAI_API_VERSION must be set"),
        ({"OPENAI_BASE_URL": "http://localhost:8000/v1"}, "OPENAI_MODEL must be set"),
        ({"AZURE_SEARCH_ENDPOINT": "https://x"}, "AZURE_SEARCH_API_KEY must be set"),
        ({"AZURE_CONTENT_SAFETY_ENDPOINT": "https://x"}, "AZURE_CONTENT_SAFETY_KEY must be set"),
        ({"CPO_MAX_CONCURRENCY": "many"}, "CPO_MAX_CONCURRENCY must be a number"),
    ],
)
def test_half_a_configuration_is_an_error_not_a_fallback(environment, message):
    with pytest.raises(ConfigError, match=message):
        select_backends(environment)


def test_keys_never_travel_over_plain_http_except_to_loopback():
    search = AzureAISearch(endpoint="http://search.example.com", api_key="k")
    with pytest.raises(ConfigError, match="must be an https:// URL"):
        search.index_corpus(None)


def test_definitions_pick_backends_from_the_environment(campaign_folder, clean_backend_env):
    embedded = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    assert isinstance(embedded.resources["generator"], LocalTemplateGenerator)
    for name, value in {**AZURE_OPENAI, **SAFETY}.items():
        clean_backend_env.setenv(name, value)
    defs = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    assert isinstance(defs.resources["generator"], AzureOpenAIGenerator)
    assert defs.resources["generator"].max_concurrency == 4  # the campaign's generation.max_concurrency
    assert isinstance(defs.resources["search"], LocalBM25Search) and isinstance(defs.resources["safety"], AzureContentSafety)
    dg.Definitions.validate_loadable(defs)
