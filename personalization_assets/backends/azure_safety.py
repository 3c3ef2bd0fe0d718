"""Category severities and blocklist matches from Azure AI Content Safety (`azure-ai-contentsafety`).

- Blocklists: the campaign's blocklists are created (`create_or_update_text_blocklist`) and
  synced (items added with `add_or_update_blocklist_items`, items no longer configured removed
  with `remove_blocklist_items`) once per resource run, before anything is analyzed.
- `analyze_text` on each text with the four categories, the blocklist names and
  `FourSeverityLevels` (0/2/4/6, the scale the policy is written in). Categories are read by
  name from `categoriesAnalysis`, never by position; a category missing from the answer is left
  missing, and screening blocks the variant for it.
- The service's blocklist matches are joined with the same terms matched locally: Azure says a
  blocklist edit can take a few minutes to take effect, and a term added just now must block
  just as surely as one added last week.
- Fail closed: a text whose analysis fails (after the retries) comes back with an error and no
  severities, which blocks its variant; a blocklist sync that fails raises, which blocks every
  variant of the batch (`safety/screening.screen` turns the exception into errors).

The SDK's own retries are off (`retry_total=0`): text analysis is a POST, which azure-core does
not retry on a 429 without `Retry-After`; `retry.call_with_retry` does it for every call.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from azure.ai.contentsafety import BlocklistClient, ContentSafetyClient
from azure.ai.contentsafety.models import (
    AddOrUpdateTextBlocklistItemsOptions,
    AnalyzeTextOptions,
    AnalyzeTextOutputType,
    RemoveTextBlocklistItemsOptions,
    TextBlocklist,
    TextBlocklistItem,
)
from azure.core.credentials import AzureKeyCredential

from personalization_assets.backends.azure_errors import classify_azure_error
from personalization_assets.backends.cache import ResponseCache, request_key
from personalization_assets.backends.concurrency import bounded_map
from personalization_assets.backends.retry import (
    RetryPolicy,
    ServiceStats,
    call_with_retry,
)
from personalization_assets.safety.policy import CATEGORIES, SAFE
from personalization_assets.safety.rules import find_blocklist_hits
from personalization_assets.safety.screening import TextAnalysis

T = TypeVar("T")
AZURE_SAFETY_BACKEND = "azure-content-safety"
MAX_TEXT_CHARS = 10_000  # the service's limit per analyze_text call
MAX_ITEMS_PER_CALL = 100  # blocklist items per add/remove call
BLOCKLIST_NAME = re.compile(r"^[0-9A-Za-z._~-]{1,64}$")
BLOCKLIST_DESCRIPTION = "Managed by the Customer Personalization Orchestrator (campaign safety.blocklists)"
_BY_NAME = {category.lower(): category for category in CATEGORIES}


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def text_chunks(text: str, limit: int = MAX_TEXT_CHARS) -> list[str]:
    """Pieces of at most `limit` characters, cut at whitespace where possible, with some overlap
    so a phrase on a boundary is seen whole in one of them."""
    if len(text) <= limit:
        return [text]
    pieces, start, overlap = [], 0, 200
    while start < len(text):
        end = min(start + limit, len(text))
        if end < len(text):
            cut = text.rfind(" ", start + limit // 2, end)
            end = cut if cut > start else end
        pieces.append(text[start:end])
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
    return pieces


def read_severities(categories_analysis: Sequence[Any] | None) -> dict[str, int]:
    """Severities by category name; categories the service did not return are absent."""
    severities: dict[str, int] = {}
    for item in categories_analysis or ():
        raw = getattr(item, "category", None)
        name = _BY_NAME.get(str(getattr(raw, "value", raw)).lower())
        severity = getattr(item, "severity", None)
        if name is not None and isinstance(severity, int) and not isinstance(severity, bool):
            severities[name] = max(severities.get(name, SAFE), severity)
    return severities


class AzureSafetyBackend:
    def __init__(
        self,
        *,
        endpoint: str,
        api_key: str,
        policy: RetryPolicy,
        stats: ServiceStats,
        max_concurrency: int,
        timeout: float = 60.0,
        sleep: Callable[[float], Any] = time.sleep,
        cache: ResponseCache | None = None,
    ):
        credential = AzureKeyCredential(api_key)
        self.endpoint = endpoint
        # Analyses that succeeded, by text and blocklists: a re-run re-screens only what failed.
        self.cache = cache
        options = {"retry_total": 0, "connection_timeout": min(timeout, 10.0), "read_timeout": timeout}
        self.client = ContentSafetyClient(endpoint, credential, **options)
        self.blocklist_client = BlocklistClient(endpoint, credential, **options)
        # The service's answer depends on its API version: a cached analysis is only of the same one.
        self.api_version = str(getattr(getattr(self.client, "_config", None), "api_version", "unknown"))
        self.policy = policy
        self.stats = stats
        self.max_concurrency = max_concurrency
        self.sleep = sleep
        self._synced: set[tuple] = set()
        self._sync_lock = threading.Lock()

    def _retry(self, operation: Callable[[], T], what: str) -> T:
        return call_with_retry(operation, policy=self.policy, classify=classify_azure_error, stats=self.stats,
                               what=f"Azure AI Content Safety {what}", sleep=self.sleep)

    # ------------------------------------------------------------------ blocklists

    def sync_blocklists(self, blocklists: Mapping[str, Sequence[str]]) -> None:
        """Create each configured blocklist and make its items exactly the configured terms."""
        signature = tuple(sorted((name, tuple(sorted(set(terms)))) for name, terms in blocklists.items()))
        with self._sync_lock:
            if signature in self._synced:
                return
            for name, terms in blocklists.items():
                self._sync_one(name, list(dict.fromkeys(str(t) for t in terms)))
            self._synced.add(signature)

    def _sync_one(self, name: str, terms: list[str]) -> None:
        if not BLOCKLIST_NAME.match(name):
            raise ValueError(f"blocklist name {name!r} is not valid for Azure AI Content Safety (letters, digits, . _ ~ -; at most 64)")
        client = self.blocklist_client
        self._retry(
            lambda: client.create_or_update_text_blocklist(
                blocklist_name=name, options=TextBlocklist(blocklist_name=name, description=BLOCKLIST_DESCRIPTION)
            ),
            f"create blocklist {name}",
        )
        existing = self._retry(lambda: list(client.list_text_blocklist_items(blocklist_name=name)), f"list blocklist {name}")
        present = {item.text for item in existing}
        missing = [term for term in terms if term not in present]
        stale = [item.blocklist_item_id for item in existing if item.text not in set(terms)]
        for batch in _chunks(missing, MAX_ITEMS_PER_CALL):
            self._retry(
                lambda batch=batch: client.add_or_update_blocklist_items(
                    blocklist_name=name,
                    options=AddOrUpdateTextBlocklistItemsOptions(blocklist_items=[TextBlocklistItem(text=t) for t in batch]),
                ),
                f"add items to blocklist {name}",
            )
            self.stats.count("blocklist_items_added", len(batch))
        for batch in _chunks(stale, MAX_ITEMS_PER_CALL):
            self._retry(
                lambda batch=batch: client.remove_blocklist_items(
                    blocklist_name=name, options=RemoveTextBlocklistItemsOptions(blocklist_item_ids=list(batch))
                ),
                f"remove items from blocklist {name}",
            )
            self.stats.count("blocklist_items_removed", len(batch))

    # ------------------------------------------------------------------ analysis

    def _analyze_piece(self, text: str, names: list[str]) -> tuple[dict[str, int], list[str]]:
        options = AnalyzeTextOptions(
            text=text,
            categories=list(CATEGORIES),
            blocklist_names=names or None,
            halt_on_blocklist_hit=False,
            output_type=AnalyzeTextOutputType.FOUR_SEVERITY_LEVELS,
        )
        result = self._retry(lambda: self.client.analyze_text(options), "analyze text")
        hits = [f"{m.blocklist_name}:{m.blocklist_item_text}" for m in (result.blocklists_match or [])]
        return read_severities(result.categories_analysis), hits

    def analyze_text(self, text: str, blocklists: Mapping[str, Sequence[str]]) -> TextAnalysis:
        """One text's analysis; a failure comes back as an error (which blocks), never raises."""
        local_hits = find_blocklist_hits(text, blocklists)
        if not text.strip():
            return TextAnalysis(dict.fromkeys(CATEGORIES, SAFE), tuple(local_hits))  # nothing to screen
        key = request_key({"service": AZURE_SAFETY_BACKEND, "endpoint": self.endpoint, "api_version": self.api_version, "text": text,
                           "blocklists": {name: sorted(set(map(str, terms))) for name, terms in blocklists.items()}})
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            self.stats.count("cache_hits")
            pieces = [(dict(severities), list(hits)) for severities, hits in cached["pieces"]]
        else:
            try:
                pieces = [self._analyze_piece(piece, list(blocklists)) for piece in text_chunks(text)]
            except Exception as exc:
                self.stats.count("failed_texts")
                return TextAnalysis(None, tuple(local_hits), error=" ".join(str(exc).split())[:400])
            if self.cache is not None:
                self.cache.put(key, {"pieces": [[severities, hits] for severities, hits in pieces]})
        severities: dict[str, int] = {}
        for piece_severities, _ in pieces:
            for category, severity in piece_severities.items():
                severities[category] = max(severities.get(category, SAFE), severity)
        if any(len(piece_severities) < len(CATEGORIES) for piece_severities, _ in pieces):
            # A category some piece did not return stays missing: screening blocks on it.
            severities = {c: s for c, s in severities.items() if all(c in p for p, _ in pieces)}
        hits = [hit for _, piece_hits in pieces for hit in piece_hits] + local_hits
        return TextAnalysis(severities, tuple(dict.fromkeys(hits)))

    def analyze(self, texts: Sequence[str], blocklists: Mapping[str, Sequence[str]]) -> list[TextAnalysis]:
        """One analysis per text, in order, after syncing the blocklists; distinct texts are sent
        once each, `max_concurrency` at a time."""
        self.sync_blocklists(blocklists)  # raises when the service is unreachable: every variant is blocked
        unique = list(dict.fromkeys(texts))  # the control email is screened once, not once per segment
        analyses = dict(zip(unique, bounded_map(lambda text: self.analyze_text(text, blocklists), unique, self.max_concurrency),
                            strict=True))
        return [analyses[text] for text in texts]
