"""Screen message variants: service verdicts (categories, blocklists) plus local compliance rules.

The service part is injected (`analyze`), so the embedded classifier and Azure AI Content Safety
share this one decision path. Subject and body are screened separately and together; the highest
severity per category counts. The quality rules (`validation`) are part of every verdict. Any failure of the service blocks the variant: fail closed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from personalization_assets.retrieval import retrieval_purpose
from personalization_assets.safety import CATEGORIES, SafetyPolicy, decide
from personalization_assets.validation import quality_failures, sources_from
from personalization_assets.variants import prompt_documents

VERDICT_COLUMNS = (
    "segment",
    "variant_id",
    "arm",
    "decision",
    "hate",
    "self_harm",
    "sexual",
    "violence",
    "blocklist_hits",
    "rule_hits",
    "reasons",
    "policy_version",
    "backend",
)
CATEGORY_COLUMNS = {"Hate": "hate", "SelfHarm": "self_harm", "Sexual": "sexual", "Violence": "violence"}


@dataclass(frozen=True)
class TextAnalysis:
    """What a safety service says about one text, in Azure's shape."""

    severities: dict[str, int] | None
    blocklist_hits: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class ServiceVerdict:
    severities: dict[str, int] | None
    blocklist_hits: tuple[str, ...] = ()
    errors: tuple[str, ...] = field(default_factory=tuple)


def combine(analyses: Sequence[TextAnalysis]) -> ServiceVerdict:
    """The strictest reading of several texts: max severity per category, all hits, all errors."""
    errors = tuple(a.error for a in analyses if a.error)
    hits = tuple(dict.fromkeys(hit for a in analyses for hit in a.blocklist_hits))
    if errors or any(a.severities is None for a in analyses):
        return ServiceVerdict(None, hits, errors or ("no category severities returned",))
    severities = {c: max(int(a.severities.get(c, 0)) for a in analyses) for c in CATEGORIES}  # type: ignore[union-attr]
    missing = [c for c in CATEGORIES if not all(c in a.severities for a in analyses)]  # type: ignore[operator]
    if missing:
        return ServiceVerdict(None, hits, (f"categories missing from the response: {missing}",))
    return ServiceVerdict(severities, hits)


def texts_to_screen(subject: str, body: str) -> list[str]:
    return [subject, body, f"{subject}\n\n{body}"]


def screen_variants(
    variants: pd.DataFrame,
    retrieved: pd.DataFrame,
    corpus: pd.DataFrame,
    *,
    analyze: Callable[[list[str]], list[TextAnalysis]],
    policy: SafetyPolicy,
    backend: str,
    body_min: int,
    body_max: int,
) -> pd.DataFrame:
    """One verdict row per variant. `analyze` takes a batch of texts and returns one analysis each."""
    texts = [t for row in variants.itertuples() for t in texts_to_screen(row.subject, row.body)]
    try:
        analyses = analyze(texts)
        if len(analyses) != len(texts):
            raise RuntimeError(f"safety service returned {len(analyses)} analyses for {len(texts)} texts")
    except Exception as exc:  # fail closed: a broken service blocks everything it should have screened
        analyses = [TextAnalysis(None, error=f"{type(exc).__name__}: {exc}")] * len(texts)

    rows = []
    for position, variant in enumerate(variants.itertuples()):
        service = combine(analyses[3 * position : 3 * position + 3])
        retrieved_here = retrieved[(retrieved["segment"] == variant.segment) & (retrieved["purpose"] == retrieval_purpose(variant.arm))]
        citations = [c for c in str(variant.citations).split(",") if c]
        # A backend refusal (e.g. a content filter) is a verdict in itself: the variant is blocked.
        rule_hits = ["generation_refused"] if variant.refusal else []
        rule_hits += quality_failures(
            variant.subject,
            variant.body,
            variant.cta,
            citations,
            retrieved=sources_from(prompt_documents(retrieved_here, corpus)),
            body_min=body_min,
            body_max=body_max,
        )
        decision = decide(
            service.severities,
            list(service.blocklist_hits),
            rule_hits,
            policy,
            service_error="; ".join(service.errors) or None,
        )
        severities = service.severities or {}
        rows.append(
            {
                "segment": variant.segment,
                "variant_id": variant.variant_id,
                "arm": variant.arm,
                "decision": decision.decision,
                **{column: severities.get(category, -1) for category, column in CATEGORY_COLUMNS.items()},
                "blocklist_hits": ",".join(service.blocklist_hits),
                "rule_hits": ",".join(rule_hits),
                "reasons": "; ".join(decision.reasons),
                "policy_version": policy.policy_version,
                "backend": backend,
            }
        )
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))
