"""From retrieved content to variant requests, and from generated variants to the warehouse table.

Per segment: one request per tone, plus the generic control message. The control request carries
no segment facts, so it is identical for every segment and a response cache answers it once:
generation costs segments x tones + 1 calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pandas as pd

from personalization_assets.audience.segmentation import SegmentCatalog
from personalization_assets.campaign.config import CONTROL_ARM, CampaignConfig
from personalization_assets.content.retrieval import PURPOSE_CONTROL, PURPOSE_SEGMENT
from personalization_assets.messages.generation import GeneratedVariant, VariantRequest
from personalization_assets.messages.prompts import (
    PromptDocument,
    PromptLibrary,
    ToneSpec,
    prompt_messages,
    prompt_sha256,
)
from personalization_assets.messages.quality import (
    describe,
    quality_failures,
    sources_from,
)

CONTROL_VARIANT_ID = "control"
GENERIC_SEGMENT_NAME = "All customers"
GENERIC_SEGMENT_DESCRIPTION = "Every customer on the list; no segment-specific facts."
VARIANT_COLUMNS = (
    "segment",
    "variant_id",
    "arm",
    "tone",
    "subject",
    "body",
    "cta",
    "citations",
    "backend",
    "model",
    "prompt_sha256",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "refusal",
    "validation_failures",
    "repair_attempts",
)


def variant_id(segment: str, arm: str) -> str:
    return CONTROL_VARIANT_ID if arm == CONTROL_ARM else f"{segment}:{arm}"


def prompt_documents(retrieved: pd.DataFrame, corpus: pd.DataFrame) -> tuple[PromptDocument, ...]:
    rows = retrieved.sort_values("rank").merge(corpus[["document_id", "content"]], on="document_id", how="left")
    return tuple(
        PromptDocument(r.document_id, r.title, r.content, r.source_url) for r in rows.itertuples(index=False)
    )


def _request(
    config: CampaignConfig,
    prompts: PromptLibrary,
    *,
    segment: str,
    arm: str,
    tone: ToneSpec,
    name: str,
    description: str,
    documents: tuple[PromptDocument, ...],
) -> VariantRequest:
    messages = prompt_messages(
        prompts,
        tone=tone,
        company_name=config.company.name,
        goal=config.goal,
        segment_name=name,
        segment_description=description,
        documents=documents,
        body_length=config.generation.body_length,
    )
    return VariantRequest(
        segment_id=segment,
        variant_id=variant_id(segment, arm),
        arm=arm,
        tone=tone,
        company_name=config.company.name,
        goal=config.goal,
        documents=documents,
        messages=tuple(messages),
        prompt_sha256=prompt_sha256(messages, tone),
        body_length=config.generation.body_length,
    )


def plan_requests(
    config: CampaignConfig,
    catalog: SegmentCatalog,
    prompts: PromptLibrary,
    segments: Sequence[str],
    retrieved: pd.DataFrame,
    corpus: pd.DataFrame,
) -> list[VariantRequest]:
    """The requests for the given segments: the control message first, then one per tone arm."""
    requests = []
    for segment_id in segments:
        segment = catalog.get(segment_id)
        here = retrieved[retrieved["segment"] == segment_id]
        control_docs = prompt_documents(here[here["purpose"] == PURPOSE_CONTROL], corpus)
        segment_docs = prompt_documents(here[here["purpose"] == PURPOSE_SEGMENT], corpus)
        requests.append(
            _request(config, prompts, segment=segment_id, arm=CONTROL_ARM, tone=prompts.control,
                     name=GENERIC_SEGMENT_NAME, description=GENERIC_SEGMENT_DESCRIPTION, documents=control_docs)
        )
        for arm in config.arm_names:
            if arm == CONTROL_ARM:
                continue
            requests.append(
                _request(config, prompts, segment=segment_id, arm=arm, tone=prompts.tone(arm),
                         name=segment.name, description=segment.description, documents=segment_docs)
            )
    return requests


def variants_table(requests: Sequence[VariantRequest], outcome: GenerationOutcome) -> pd.DataFrame:
    rows = [
        {
            "segment": request.segment_id,
            "variant_id": request.variant_id,
            "arm": request.arm,
            "tone": None if request.arm == CONTROL_ARM else request.arm,
            "subject": result.subject,
            "body": result.body,
            "cta": result.cta,
            "citations": ",".join(result.citations),
            "backend": result.backend,
            "model": result.model,
            "prompt_sha256": request.prompt_sha256,
            "input_tokens": int(result.input_tokens),
            "output_tokens": int(result.output_tokens),
            "cost_usd": float(result.cost_usd),
            "refusal": result.refusal or "",
            "validation_failures": ",".join(failures),
            "repair_attempts": attempts,
        }
        for request, result, failures, attempts in zip(
            requests, outcome.results, outcome.failures, outcome.repair_attempts, strict=True
        )
    ]
    return pd.DataFrame(rows, columns=list(VARIANT_COLUMNS))


REPAIR_INSTRUCTION = (
    "Your previous answer broke these rules:\n{failures}\n"
    "Rewrite the email so that it follows every rule, using only the documents above. "
    "Answer with the JSON object only."
)


def _failures(request: VariantRequest, result: GeneratedVariant) -> list[str]:
    if result.refusal:
        return []  # a refusal is blocked as such; there is nothing to validate
    return quality_failures(
        result.subject,
        result.body,
        result.cta,
        list(result.citations),
        retrieved=sources_from(request.documents),
        body_length=request.body_length,
    )


def repair_request(request: VariantRequest, result: GeneratedVariant, failures: Sequence[str]) -> VariantRequest:
    """The same conversation, plus the failed answer and the rules it broke."""
    sources = [f"{d.title}\n{d.content}" for d in request.documents]
    previous = json.dumps(
        {"subject": result.subject, "body": result.body, "cta": result.cta, "citations": list(result.citations)}
    )
    feedback = REPAIR_INSTRUCTION.format(failures="\n".join(f"- {line}" for line in describe(failures, result.subject, result.body, sources)))
    messages = (*request.messages, {"role": "assistant", "content": previous}, {"role": "user", "content": feedback})
    return replace(request, messages=messages, prompt_sha256=prompt_sha256(messages, request.tone))


@dataclass(frozen=True)
class GenerationOutcome:
    results: list[GeneratedVariant]
    failures: list[list[str]]  # after the last attempt
    repair_attempts: list[int]


def _paid_once(requests: Sequence[VariantRequest], results: list[GeneratedVariant]) -> list[GeneratedVariant]:
    """Identical requests (the control message, the same for every segment) cost once: the first
    keeps its tokens and cost, every repeat shows 0, so the table's sums are what the run paid,
    whichever backend answered (a remote backend already sends them once)."""
    seen: set[str] = set()
    paid = []
    for request, result in zip(requests, results, strict=True):
        # The prompt hash covers the messages and the tone: equal hashes are the same request.
        paid.append(replace(result, input_tokens=0, output_tokens=0, cost_usd=0.0) if request.prompt_sha256 in seen else result)
        seen.add(request.prompt_sha256)
    return paid


def generate_with_repair(
    generate: Callable[[Sequence[VariantRequest]], list[GeneratedVariant]],
    requests: Sequence[VariantRequest],
    *,
    repairable: bool,
) -> GenerationOutcome:
    """Generate, validate, and give each failing variant one repair attempt with its failures fed
    back. A deterministic backend (the embedded template) would answer the same again, so it is
    not asked twice; whatever still fails is blocked at screening with these reasons."""
    results = _paid_once(requests, list(generate(requests)))
    failures = [_failures(q, r) for q, r in zip(requests, results, strict=True)]
    attempts = [0] * len(requests)
    retry = [i for i, f in enumerate(failures) if f and repairable] if repairable else []
    if retry:
        repair_requests = [repair_request(requests[i], results[i], failures[i]) for i in retry]
        repaired = _paid_once(repair_requests, list(generate(repair_requests)))
        for i, result in zip(retry, repaired, strict=True):
            first = results[i]  # the first attempt was paid too: its usage stays in the row
            paid = replace(result, input_tokens=result.input_tokens + first.input_tokens,
                           output_tokens=result.output_tokens + first.output_tokens, cost_usd=result.cost_usd + first.cost_usd)
            results[i], failures[i], attempts[i] = paid, _failures(requests[i], result), 1
    return GenerationOutcome(results, failures, attempts)


def citation_coverage(retrieved: pd.DataFrame, variants: pd.DataFrame) -> pd.DataFrame:
    """Per segment: which documents retrieval returned for its tones, and which the tones cited."""
    rows = []
    for segment, found in retrieved[retrieved["purpose"] == PURPOSE_SEGMENT].groupby("segment", sort=False):
        tones = variants[(variants["segment"] == segment) & (variants["arm"] != CONTROL_ARM)]
        cited = sorted({c for value in tones["citations"] for c in str(value).split(",") if c})
        ids = list(found.sort_values("rank")["document_id"])
        rows.append({"segment": segment, "retrieved": ", ".join(ids), "cited": ", ".join(cited),
                     "not_cited": ", ".join(i for i in ids if i not in cited)})
    return pd.DataFrame(rows, columns=["segment", "retrieved", "cited", "not_cited"])
