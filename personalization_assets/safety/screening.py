"""The one screening path: service verdicts (categories, blocklists) plus this project's rules.

The service part is injected (`analyze`: the embedded classifier of `backends/local_safety.py` or
Azure AI Content Safety), so every backend shares this decision path, and the safety benchmark and
tests measure the path the pipeline runs. Subject and body are screened separately and together;
the highest severity per category counts. The quality rules (`messages/quality.py`, compliance
included) are part of every variant's verdict. Any failure of the service blocks: fail closed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd

from personalization_assets.campaign.config import BodyLength
from personalization_assets.content.retrieval import retrieval_purpose
from personalization_assets.messages.quality import quality_failures, sources_from
from personalization_assets.messages.variants import prompt_documents
from personalization_assets.safety.approval import content_hashes
from personalization_assets.safety.policy import (
    CATEGORIES,
    SafetyDecision,
    SafetyPolicy,
    decide,
)

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
    "content_hash",  # the exact text judged (safety/approval.content_hash): a verdict covers that text only
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


class Screened(NamedTuple):
    """One text pair's screen: what the service said, the rules it broke, and the decision."""

    severities: dict[str, int] | None
    blocklist_hits: tuple[str, ...]
    rule_hits: tuple[str, ...]
    decision: SafetyDecision


Analyze = Callable[[list[str]], list[TextAnalysis]]


def screen(
    subjects: Sequence[str], bodies: Sequence[str], rule_hits: Sequence[Sequence[str]], *, analyze: Analyze, policy: SafetyPolicy
) -> list[Screened]:
    """Screen each (subject, body) with the service, add its rule hits, decide. `analyze` takes one
    batch of texts and returns one analysis each; if it fails, or answers for the wrong number of
    texts, every pair is blocked."""
    if not len(subjects) == len(bodies) == len(rule_hits):
        raise ValueError(f"{len(subjects)} subjects, {len(bodies)} bodies and {len(rule_hits)} rule-hit lists: one of each per text")
    texts = [text for subject, body in zip(subjects, bodies) for text in texts_to_screen(subject, body)]
    try:
        analyses = analyze(texts)
        if len(analyses) != len(texts):
            raise RuntimeError(f"safety service returned {len(analyses)} analyses for {len(texts)} texts")
    except Exception as exc:  # fail closed: a broken service blocks everything it should have screened
        analyses = [TextAnalysis(None, error=f"{type(exc).__name__}: {exc}")] * len(texts)
    screened = []
    for position, hits in enumerate(rule_hits):
        service = combine(analyses[3 * position : 3 * position + 3])
        decision = decide(service.severities, list(service.blocklist_hits), hits, policy,
                          service_error="; ".join(service.errors) or None)
        screened.append(Screened(service.severities, service.blocklist_hits, tuple(hits), decision))
    return screened


def verdict_fields(result: Screened, policy: SafetyPolicy, backend: str) -> dict[str, object]:
    """The verdict columns every screened text shares (variants and documents), after its id and decision."""
    return {
        **{column: (result.severities or {}).get(category, -1) for category, column in CATEGORY_COLUMNS.items()},
        "blocklist_hits": ",".join(result.blocklist_hits),
        "rule_hits": ",".join(result.rule_hits),
        "reasons": "; ".join(result.decision.reasons),
        "policy_version": policy.policy_version,
        "backend": backend,
    }


def screen_variants(
    variants: pd.DataFrame,
    retrieved: pd.DataFrame,
    corpus: pd.DataFrame,
    *,
    analyze: Analyze,
    policy: SafetyPolicy,
    backend: str,
    body_length: BodyLength,
) -> pd.DataFrame:
    """One verdict row per variant: the service's verdict, a refusal, and every quality rule."""
    rule_hits = []
    for variant in variants.itertuples():
        retrieved_here = retrieved[(retrieved["segment"] == variant.segment) & (retrieved["purpose"] == retrieval_purpose(variant.arm))]
        citations = [c for c in str(variant.citations).split(",") if c]
        # A backend refusal (e.g. a content filter) is a verdict in itself: the variant is blocked.
        hits = ["generation_refused"] if variant.refusal else []
        hits += quality_failures(
            variant.subject, variant.body, variant.cta, citations,
            retrieved=sources_from(prompt_documents(retrieved_here, corpus)), body_length=body_length,
        )
        rule_hits.append(hits)
    screened = screen(variants["subject"].tolist(), variants["body"].tolist(), rule_hits, analyze=analyze, policy=policy)
    rows = [
        {
            "segment": variant.segment,
            "variant_id": variant.variant_id,
            "arm": variant.arm,
            "decision": result.decision.decision,
            **verdict_fields(result, policy, backend),
            "content_hash": digest,
        }
        for variant, result, digest in zip(variants.itertuples(), screened, content_hashes(variants), strict=True)
    ]
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))
