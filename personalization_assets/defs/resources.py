"""Service roles as Dagster resources: one abstract class per role, swappable implementations.

Assets depend on the abstract role (`generator`, `search`, `safety`), never on a backend, so the
embedded defaults and the Azure backends are interchangeable by configuration alone.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr

from personalization_assets.audience.segmentation import SegmentCatalog, load_catalog
from personalization_assets.audit.trail import AuditLog
from personalization_assets.backends import local_safety, local_search
from personalization_assets.backends.local_generator import compose_local
from personalization_assets.backends.local_search import BM25Index
from personalization_assets.backends.retry import RetryPolicy, ServiceStats
from personalization_assets.backends.secrets import Scrubber
from personalization_assets.campaign.config import (
    CampaignConfig,
    DeliverySettings,
    load_campaign,
)
from personalization_assets.campaign.environment import ServiceTuning
from personalization_assets.campaign.errors import ConfigError
from personalization_assets.campaign.paths import (
    WAREHOUSE_SCHEMA,
    audit_dir,
    cache_dir,
    delivery_dir,
    exports_dir,
    warehouse_path,
)
from personalization_assets.content.retrieval import SearchHit
from personalization_assets.defs.io_managers import (
    PostgresWarehouseIOManager,
    WarehouseIOManager,
)
from personalization_assets.defs.partitions import CAMPAIGN
from personalization_assets.delivery.ledger import (
    LEDGER_FILE,
    Ledger,
    rehearsal_ledger_path,
)
from personalization_assets.delivery.mime import SECRET_ENV, SigningKey
from personalization_assets.delivery.transport import (
    SECURITY_MODES,
    MailConnection,
    OutboxConnection,
    SmtpConnection,
)
from personalization_assets.messages.generation import GeneratedVariant, VariantRequest
from personalization_assets.messages.prompts import PromptLibrary, load_prompts
from personalization_assets.safety.screening import TextAnalysis
from personalization_assets.warehouse import (
    WAREHOUSE_URL_ENV,
    DuckDBWarehouse,
    Warehouse,
    warehouse_url,
)


class CampaignResource(dg.ConfigurableResource):
    """The campaign being run: its config file, segment catalog and prompt library."""

    campaign_path: str

    @cached_property
    def config(self) -> CampaignConfig:
        return load_campaign(self.campaign_path)

    @cached_property
    def catalog(self) -> SegmentCatalog:
        return load_catalog(self.config.paths.segments)

    @cached_property
    def prompts(self) -> PromptLibrary:
        return load_prompts(self.config.paths.prompts, self.config.tones)


class AuditResource(dg.ConfigurableResource):
    """Where the append-only audit trail lives (default `$CPO_HOME/audit`)."""

    directory: str

    def log(self) -> AuditLog:
        return AuditLog(self.directory)


class DeliveryLedgerResource(dg.ConfigurableResource):
    """The delivery ledger every campaign of this CPO_HOME shares (default `$CPO_HOME/delivery/ledger.sqlite3`)."""

    path: str

    def open(self) -> Ledger:
        return Ledger(self.path)

    def open_rehearsal(self) -> Ledger:
        """The outbox's own records (`outbox-ledger.sqlite3` beside the ledger): a send to the outbox
        folder is a rehearsal, which no frequency cap counts and no real send skips."""
        return Ledger(rehearsal_ledger_path(Path(self.path)))


class UnsubscribeKeyResource(dg.ConfigurableResource):
    """The key of the unsubscribe tokens: `CPO_UNSUBSCRIBE_SECRET` (a `dagster.EnvVar`, read when a run
    starts, never stored); unset: the published test key, whose messages SMTP delivery refuses."""

    secret: str | None = None

    def key(self) -> SigningKey:
        return SigningKey.from_secret(self.secret)


class WarehouseResource(dg.ConfigurableResource, ABC):
    """Reads of the warehouse's tables beyond an asset's inputs (the checks, earlier waves), in
    DuckDB SQL whichever warehouse holds them (`warehouse/`)."""

    @abstractmethod
    def warehouse(self) -> Warehouse: ...

    def reader(self, tables: Iterable[str] | None = None, *, wave: str | None = None):
        return self.warehouse().reader(tables, wave=wave)

    def has_rows(self, table: str, wave: str) -> bool:
        return self.warehouse().has_rows(table, wave)


class EmbeddedWarehouse(WarehouseResource):
    """The DuckDB file under CPO_HOME."""

    database: str

    def warehouse(self) -> Warehouse:
        return DuckDBWarehouse(self.database, read_only=False)


class SharedWarehouse(WarehouseResource):
    """The PostgreSQL warehouse of CPO_WAREHOUSE_URL."""

    url: str

    def warehouse(self) -> Warehouse:
        from personalization_assets.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse(self.url)


class MailTransportResource(dg.ConfigurableResource, ABC):
    """Where `cpo send` hands each message: a mail server, or the embedded outbox."""

    @property
    @abstractmethod
    def description(self) -> str: ...

    @property
    def delivers_to_people(self) -> bool:
        """Whether messages reach real mailboxes (then test-key tokens are refused)."""
        return True

    def rehearses(self, method: str) -> bool:
        """Whether a send by `method` ("transport" or "esp_bundle") is a rehearsal: to the outbox
        folder, with records of its own that no frequency cap counts."""
        return method == "transport" and not self.delivers_to_people

    @abstractmethod
    def connect(self, wave: str, settings: DeliverySettings) -> MailConnection: ...


class OutboxTransport(MailTransportResource):
    """The embedded default: each message as an .eml file in `<exports>/<wave>/outbox/`."""

    directory: str

    @property
    def description(self) -> str:
        return f"the outbox folder {self.directory}/<wave>/outbox (set CPO_SMTP_HOST to deliver through a mail server)"

    @property
    def delivers_to_people(self) -> bool:
        return False

    def connect(self, wave: str, settings: DeliverySettings) -> MailConnection:
        return OutboxConnection(Path(self.directory) / wave / "outbox")


class SmtpTransport(MailTransportResource):
    """An SMTP server (`smtplib`): STARTTLS (default), implicit TLS, or none on loopback only;
    credentials as `dagster.EnvVar`s, read when a run starts, never stored."""

    host: str
    port: int
    security: str = "starttls"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None

    @property
    def description(self) -> str:
        return f"SMTP {self.host}:{self.port} ({self.security})"

    def connect(self, wave: str, settings: DeliverySettings) -> MailConnection:
        return SmtpConnection(self.host, self.port, self.security, self.username, self.password, settings.timeout_seconds, self.ca_file,
                              data_timeout=settings.data_timeout_seconds)


class GeneratorResource(dg.ConfigurableResource, ABC):
    """Writes message variants. Implementations must label output with backend and model."""

    @property
    def repairable(self) -> bool:
        """Whether asking again with the validation failures can give a different answer."""
        return True

    @abstractmethod
    def generate(self, requests: Sequence[VariantRequest]) -> list[GeneratedVariant]:
        """One result per request, in order; failures come back as refusals, not exceptions."""

    def service_stats(self) -> Mapping[str, float]:
        """Counters of the calls this resource made in this run (requests, retries, cache hits);
        empty for an embedded backend. Assets report the difference as metadata."""
        return {}


class LocalTemplateGenerator(GeneratorResource):
    """The embedded, offline, deterministic template composer."""

    @property
    def repairable(self) -> bool:
        return False  # deterministic: the same request always composes the same email

    def generate(self, requests: Sequence[VariantRequest]) -> list[GeneratedVariant]:
        return [compose_local(request) for request in requests]


class SearchResource(dg.ConfigurableResource, ABC):
    """Indexes the approved corpus and retrieves documents for a query within allowed audiences."""

    @property
    @abstractmethod
    def backend(self) -> str: ...

    @abstractmethod
    def index_corpus(self, corpus: pd.DataFrame) -> dict[str, object]:
        """Make the corpus searchable; returns metadata about the index."""

    @abstractmethod
    def search(self, corpus: pd.DataFrame, query: str, audiences: Sequence[str], top_k: int) -> list[SearchHit]: ...

    def service_stats(self) -> Mapping[str, float]:
        """Counters of the calls this resource made in this run; empty for an embedded backend."""
        return {}


class LocalBM25Search(SearchResource):
    """Embedded BM25 over the corpus table, with the audience as a filter (as an OData filter would)."""

    @property
    def backend(self) -> str:
        return local_search.BACKEND

    def index_corpus(self, corpus: pd.DataFrame) -> dict[str, object]:
        index = BM25Index(corpus)
        return {"documents": len(corpus), "vocabulary": len(index.idf)}

    def search(self, corpus: pd.DataFrame, query: str, audiences: Sequence[str], top_k: int) -> list[SearchHit]:
        return BM25Index(corpus).search(query, audiences, top_k)


class SafetyResource(dg.ConfigurableResource, ABC):
    """Category severities and blocklist matches for texts, in Azure AI Content Safety's shape."""

    @property
    @abstractmethod
    def backend(self) -> str: ...

    @abstractmethod
    def analyze(self, texts: list[str], blocklists: dict[str, tuple[str, ...]]) -> list[TextAnalysis]: ...

    def service_stats(self) -> Mapping[str, float]:
        """Counters of the calls this resource made in this run; empty for an embedded backend."""
        return {}


class LocalSafety(SafetyResource):
    """The embedded category classifier and blocklist matcher."""

    @property
    def backend(self) -> str:
        return local_safety.BACKEND

    def analyze(self, texts: list[str], blocklists: dict[str, tuple[str, ...]]) -> list[TextAnalysis]:
        return local_safety.analyze(texts, blocklists)


# ------------------------------------------------------------------------------------------------
# Azure backends (and OpenAI-compatible servers) through the official SDKs
# ------------------------------------------------------------------------------------------------
# The SDKs are imported when a backend is first used, so the embedded, offline path never pays for
# them. Secrets are `dagster.EnvVar` fields: Dagster resolves them when a run starts and records
# only the variable's name in the run's config, never the value.

_TUNING_DEFAULTS = {name: field.default for name, field in ServiceTuning.model_fields.items()}
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# The openai SDK needs some key; local servers (Ollama, vLLM) ignore it.
NO_API_KEY = "not-needed"


def _resolved(value: str) -> str:
    """A field's value; an `EnvVar` read outside a run is resolved from the environment here."""
    if isinstance(value, dg.EnvVar):
        resolved = value.get_value()
        if not resolved:
            raise ConfigError("environment", f"{value.env_var_name} is not set")
        return resolved
    return value


def _require_https(url: str, variable: str) -> str:
    """A key sent over plain http is readable on the wire: only loopback (tests, a local proxy) may."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return url.rstrip("/")
    raise ConfigError("environment", f"{variable} must be an https:// URL (plain http only to localhost), got {url!r}")


class RemoteServiceResource(dg.ConfigurableResource):
    """What every remote backend shares: concurrency, retries with backoff, timeouts, and counters."""

    # The same defaults as the environment tuning's (`campaign/environment.ServiceTuning`).
    max_concurrency: int = _TUNING_DEFAULTS["max_concurrency"]
    max_attempts: int = _TUNING_DEFAULTS["max_attempts"]
    max_backoff_seconds: float = _TUNING_DEFAULTS["max_backoff_seconds"]
    timeout_seconds: float = _TUNING_DEFAULTS["timeout_seconds"]
    retry_budget_seconds: float = _TUNING_DEFAULTS["retry_budget_seconds"]

    _stats: ServiceStats = PrivateAttr(default_factory=ServiceStats)
    _backend: Any = PrivateAttr(default=None)
    _backend_lock: Any = PrivateAttr(default_factory=threading.Lock)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_backoff=min(0.5, self.max_backoff_seconds),
            max_backoff=self.max_backoff_seconds,
            budget_seconds=self.retry_budget_seconds,
        )

    def service_stats(self) -> Mapping[str, float]:
        return self._stats.snapshot()

    def _make_backend(self) -> Any:
        raise NotImplementedError

    def _get_backend(self) -> Any:
        # One client per run (Dagster builds a fresh resource object per run), built on first use.
        with self._backend_lock:
            if self._backend is None:
                self._backend = self._make_backend()
            return self._backend

    def scrubber(self) -> Scrubber:
        """Removes this resource's key, and any echo of it, from what the service says back."""
        key = getattr(self, "api_key", None)
        return Scrubber([_resolved(key)] if key else [])

    @contextmanager
    def scrubbed_errors(self) -> Iterator[Scrubber]:
        """Any exception raised inside becomes a ServiceError with the key scrubbed from its message,
        and without the original as its cause (Dagster would store the cause's message too)."""
        scrub = self.scrubber()
        try:
            yield scrub
        except ConfigError:
            raise  # our own words about the configuration (an endpoint, a variable), never a service's
        except Exception as exc:
            raise scrub.error(exc) from None


class _ChatGenerator(RemoteServiceResource, GeneratorResource, ABC):
    """Chat-completion generation with a response cache; subclasses say how to reach the service."""

    temperature: float | None = 0.7
    max_tokens: int | None = 1200
    use_cache: bool = True
    cache_dir: str | None = None  # default: $CPO_HOME/cache/generation
    input_price_per_million: float | None = None  # USD; None: the price table by model
    output_price_per_million: float | None = None

    @abstractmethod
    def _client(self) -> Any: ...

    @abstractmethod
    def _settings(self) -> Any: ...

    def _prices(self) -> tuple[float, float] | None:
        if self.input_price_per_million is None or self.output_price_per_million is None:
            return None
        return (self.input_price_per_million, self.output_price_per_million)

    def _make_backend(self) -> Any:
        from personalization_assets.backends.azure_openai import (
            ChatGenerator,
            completion_function,
        )
        from personalization_assets.backends.cache import ResponseCache

        cache = ResponseCache(self.cache_dir or cache_dir() / "generation") if self.use_cache else None
        return ChatGenerator(
            completion_function(self._client()),
            self._settings(),
            policy=self.retry_policy(),
            stats=self._stats,
            cache=cache,
            max_concurrency=self.max_concurrency,
        )

    def generate(self, requests: Sequence[VariantRequest]) -> list[GeneratedVariant]:
        with self.scrubbed_errors() as scrub:
            variants = self._get_backend().generate(requests)
        # A refusal quotes what the service said, which may quote the key.
        return [replace(v, refusal=scrub(v.refusal)) if v.refusal else v for v in variants]


class AzureOpenAIGenerator(_ChatGenerator):
    """Azure OpenAI chat completions (`openai.AzureOpenAI`), JSON output, one call per distinct request."""

    endpoint: str
    api_key: str
    deployment: str
    api_version: str

    def _client(self) -> Any:
        from personalization_assets.backends.azure_openai import azure_client

        return azure_client(
            endpoint=_require_https(self.endpoint, "AZURE_OPENAI_ENDPOINT"), api_key=_resolved(self.api_key),
            api_version=self.api_version, deployment=self.deployment, timeout=self.timeout_seconds,
        )

    def _settings(self) -> Any:
        from personalization_assets.backends.azure_openai import (
            AZURE_OPENAI_BACKEND,
            ChatSettings,
        )

        return ChatSettings(AZURE_OPENAI_BACKEND, self.deployment, self.temperature, self.max_tokens, prices=self._prices())


class OpenAICompatibleGenerator(_ChatGenerator):
    """Any OpenAI-compatible server (Ollama, vLLM, LM Studio) through `openai.OpenAI(base_url=...)`."""

    base_url: str
    model: str
    api_key: str = NO_API_KEY

    def _client(self) -> Any:
        from personalization_assets.backends.azure_openai import compatible_client

        return compatible_client(base_url=self.base_url, api_key=_resolved(self.api_key), timeout=self.timeout_seconds)

    def _settings(self) -> Any:
        from personalization_assets.backends.azure_openai import (
            COMPATIBLE_BACKEND,
            ChatSettings,
        )

        # A local model costs nothing per token unless prices are set on the resource.
        return ChatSettings(COMPATIBLE_BACKEND, self.model, self.temperature, self.max_tokens,
                            prices=self._prices() or (0.0, 0.0))


class AzureAISearch(RemoteServiceResource, SearchResource):
    """Azure AI Search (`azure-search-documents`): index kept equal to the corpus, audience filter, top-k."""

    endpoint: str
    api_key: str
    index_name: str = "cpo-content"
    index_wait_seconds: float = 30.0

    @property
    def backend(self) -> str:
        from personalization_assets.backends.azure_search import AZURE_SEARCH_BACKEND

        return AZURE_SEARCH_BACKEND

    def _make_backend(self) -> Any:
        from personalization_assets.backends.azure_search import AzureSearchBackend

        return AzureSearchBackend(
            endpoint=_require_https(self.endpoint, "AZURE_SEARCH_ENDPOINT"), api_key=_resolved(self.api_key),
            index_name=self.index_name, policy=self.retry_policy(), stats=self._stats, timeout=self.timeout_seconds,
            index_wait_seconds=self.index_wait_seconds,
        )

    def index_corpus(self, corpus: pd.DataFrame) -> dict[str, object]:
        with self.scrubbed_errors():
            return self._get_backend().sync_corpus(corpus)

    def search(self, corpus: pd.DataFrame, query: str, audiences: Sequence[str], top_k: int) -> list[SearchHit]:
        # Only documents of this run's corpus: an index can lag behind a withdrawn document.
        known = set(corpus["document_id"])
        with self.scrubbed_errors():
            found = self._get_backend().search(query, audiences, top_k)
        hits = [hit for hit in found if hit.document_id in known]
        return [SearchHit(hit.document_id, hit.score, rank) for rank, hit in enumerate(hits, 1)]


class AzureContentSafety(RemoteServiceResource, SafetyResource):
    """Azure AI Content Safety (`azure-ai-contentsafety`): analyze_text plus synced text blocklists."""

    endpoint: str
    api_key: str
    use_cache: bool = True  # analyses that succeeded are kept: a re-run re-screens only what failed
    cache_dir: str | None = None  # default: $CPO_HOME/cache/safety

    @property
    def backend(self) -> str:
        from personalization_assets.backends.azure_safety import AZURE_SAFETY_BACKEND

        return AZURE_SAFETY_BACKEND

    def _make_backend(self) -> Any:
        from personalization_assets.backends.azure_safety import AzureSafetyBackend
        from personalization_assets.backends.cache import ResponseCache

        return AzureSafetyBackend(
            endpoint=_require_https(self.endpoint, "AZURE_CONTENT_SAFETY_ENDPOINT"), api_key=_resolved(self.api_key),
            policy=self.retry_policy(), stats=self._stats, max_concurrency=self.max_concurrency,
            timeout=self.timeout_seconds,
            cache=ResponseCache(self.cache_dir or cache_dir() / "safety") if self.use_cache else None,
        )

    def analyze(self, texts: list[str], blocklists: dict[str, tuple[str, ...]]) -> list[TextAnalysis]:
        with self.scrubbed_errors() as scrub:
            analyses = self._get_backend().analyze(texts, blocklists)
        # A failed text's error quotes what the service said, which may quote the key.
        return [replace(a, error=scrub(a.error)) if a.error else a for a in analyses]


def _required(env: Mapping[str, str], selector: str, *names: str) -> None:
    missing = [name for name in names if name not in env]
    if missing:
        raise ConfigError("environment", f"{selector} is set, so {', '.join(missing)} must be set too")


def select_backends(environ: Mapping[str, str] | None = None, *, max_concurrency: int = 4) -> dict[str, dg.ConfigurableResource]:
    """The generator, search and safety resources the environment asks for, each role on its own.

    - generator: `AZURE_OPENAI_ENDPOINT` (+ `AZURE_OPENAI_API_KEY`, `AZURE_OPENAI_DEPLOYMENT`,
      `OPENAI_API_VERSION`) -> Azure OpenAI; else `OPENAI_BASE_URL` (+ `OPENAI_MODEL`, optional
      `OPENAI_API_KEY`) -> an OpenAI-compatible server; else the embedded template generator.
    - search: `AZURE_SEARCH_ENDPOINT` (+ `AZURE_SEARCH_API_KEY`, optional `AZURE_SEARCH_INDEX`).
    - safety: `AZURE_CONTENT_SAFETY_ENDPOINT` (+ `AZURE_CONTENT_SAFETY_KEY`).
    With none set, every role is the embedded default. Keys are passed as `dagster.EnvVar`, read
    when a run starts; `environ` (default `os.environ`) decides only which backends are used.
    Half a configuration (an endpoint without its key) is an error, not a silent fallback.
    """
    source = os.environ if environ is None else environ
    env = {name: value.strip() for name, value in source.items() if value and value.strip()}
    settings = ServiceTuning.from_environment(env, max_concurrency=max_concurrency)
    tuning = settings.resource_fields()
    cache = {"use_cache": settings.use_cache}

    generator: dg.ConfigurableResource
    if "AZURE_OPENAI_ENDPOINT" in env:
        _required(env, "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_DEPLOYMENT", "OPENAI_API_VERSION")
        generator = AzureOpenAIGenerator(
            endpoint=env["AZURE_OPENAI_ENDPOINT"], api_key=dg.EnvVar("AZURE_OPENAI_API_KEY"),
            deployment=env["AZURE_OPENAI_DEPLOYMENT"], api_version=env["OPENAI_API_VERSION"], **tuning, **cache,
        )
    elif "OPENAI_BASE_URL" in env:
        _required(env, "OPENAI_BASE_URL", "OPENAI_MODEL")
        generator = OpenAICompatibleGenerator(
            base_url=env["OPENAI_BASE_URL"], model=env["OPENAI_MODEL"],
            api_key=dg.EnvVar("OPENAI_API_KEY") if "OPENAI_API_KEY" in env else NO_API_KEY, **tuning, **cache,
        )
    else:
        generator = LocalTemplateGenerator()

    search: dg.ConfigurableResource
    if "AZURE_SEARCH_ENDPOINT" in env:
        _required(env, "AZURE_SEARCH_ENDPOINT", "AZURE_SEARCH_API_KEY")
        search = AzureAISearch(
            endpoint=env["AZURE_SEARCH_ENDPOINT"], api_key=dg.EnvVar("AZURE_SEARCH_API_KEY"),
            index_name=env.get("AZURE_SEARCH_INDEX", "cpo-content"), **tuning,
        )
    else:
        search = LocalBM25Search()

    safety: dg.ConfigurableResource
    if "AZURE_CONTENT_SAFETY_ENDPOINT" in env:
        _required(env, "AZURE_CONTENT_SAFETY_ENDPOINT", "AZURE_CONTENT_SAFETY_KEY")
        safety = AzureContentSafety(
            endpoint=env["AZURE_CONTENT_SAFETY_ENDPOINT"], api_key=dg.EnvVar("AZURE_CONTENT_SAFETY_KEY"), **tuning,
        )
    else:
        safety = LocalSafety()
    return {"generator": generator, "search": search, "safety": safety}


SMTP_VARIABLES = ("CPO_SMTP_HOST", "CPO_SMTP_PORT", "CPO_SMTP_SECURITY", "CPO_SMTP_USERNAME", "CPO_SMTP_PASSWORD", "CPO_SMTP_CA_FILE")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def select_transport(environ: Mapping[str, str] | None = None, *, home: Path | None = None) -> MailTransportResource:
    """`CPO_SMTP_HOST` (+ `CPO_SMTP_PORT`, default 587; `CPO_SMTP_SECURITY` starttls | tls | none,
    default starttls; `CPO_SMTP_USERNAME` and `CPO_SMTP_PASSWORD`; `CPO_SMTP_CA_FILE` to trust a
    private CA) -> that server; else the embedded outbox. `none` (no TLS) is refused except on
    loopback, and a password is never sent without TLS."""
    source = os.environ if environ is None else environ
    env = {name: source[name].strip() for name in SMTP_VARIABLES if source.get(name, "").strip()}
    if "CPO_SMTP_HOST" not in env:
        return OutboxTransport(directory=str(exports_dir(home)))
    security = env.get("CPO_SMTP_SECURITY", "starttls").lower()
    if security not in SECURITY_MODES:
        raise ConfigError("environment", f"CPO_SMTP_SECURITY must be one of {list(SECURITY_MODES)}, got {security!r}")
    port = env.get("CPO_SMTP_PORT", "465" if security == "tls" else "587")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("environment", f"CPO_SMTP_PORT must be a port number, got {port!r}")
    if security == "none" and (env["CPO_SMTP_HOST"] not in LOOPBACK_HOSTS or "CPO_SMTP_USERNAME" in env):
        raise ConfigError("environment", "CPO_SMTP_SECURITY=none sends in plain text: allowed only to a loopback server and without "
                          "credentials; use starttls or tls")
    if ("CPO_SMTP_USERNAME" in env) != ("CPO_SMTP_PASSWORD" in env):
        raise ConfigError("environment", "CPO_SMTP_USERNAME and CPO_SMTP_PASSWORD are set together, or neither")
    return SmtpTransport(
        host=env["CPO_SMTP_HOST"], port=int(port), security=security,
        username=dg.EnvVar("CPO_SMTP_USERNAME") if "CPO_SMTP_USERNAME" in env else None,
        password=dg.EnvVar("CPO_SMTP_PASSWORD") if "CPO_SMTP_PASSWORD" in env else None,
        ca_file=env.get("CPO_SMTP_CA_FILE"),
    )


def campaign_resources(
    config: CampaignConfig, *, warehouse: Path | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Every resource a campaign's assets need: the campaign, its audit trail, the three service
    roles (from the environment, else embedded), and the DuckDB warehouse under `CPO_HOME`."""
    database = str(warehouse or warehouse_path())
    source = os.environ if environ is None else environ
    return {
        "campaign": CampaignResource(campaign_path=str(config.path)),
        "audit": AuditResource(directory=str(audit_dir())),
        "delivery_ledger": DeliveryLedgerResource(path=str(delivery_dir() / LEDGER_FILE)),
        "unsubscribe_key": UnsubscribeKeyResource(secret=dg.EnvVar(SECRET_ENV) if source.get(SECRET_ENV, "").strip() else None),
        "transport": select_transport(source),
        **select_backends(environ, max_concurrency=config.generation.max_concurrency),
        **select_warehouse_resources(source, database),
    }


def select_warehouse_resources(environ: Mapping[str, str], database: str) -> dict[str, Any]:
    """The IO manager and the reader of the configured warehouse: one table per asset, in the
    PostgreSQL database of CPO_WAREHOUSE_URL (an EnvVar: the URL, which may hold a password, is
    never stored), else in the DuckDB file `database`. Within a run, frames just stored are not re-read."""
    if warehouse_url(environ) is not None:
        url = dg.EnvVar(WAREHOUSE_URL_ENV)
        return {"io_manager": PostgresWarehouseIOManager(url=url), "warehouse": SharedWarehouse(url=url)}
    return {"io_manager": WarehouseIOManager(database=database, schema=WAREHOUSE_SCHEMA), "warehouse": EmbeddedWarehouse(database=database)}


@dg.definitions
def resources() -> dg.Definitions:
    """The code location's resources, for its campaign (`defs/partitions.py`)."""
    return dg.Definitions(resources=campaign_resources(CAMPAIGN))
