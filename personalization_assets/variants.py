"""From retrieved content to variant requests, and from generated variants to the warehouse table.

Per segment: one request per tone, plus the generic control message. The control request carries
no segment facts, so it is identical for every segment and a response cache answers it once:
generation costs segments x tones + 1 calls.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from personalization_assets.config import CONTROL_ARM, CampaignConfig
from personalization_assets.generation import GeneratedVariant, VariantRequest
from personalization_assets.prompts import PromptDocument, PromptLibrary, ToneSpec, prompt_sha256, render_messages
from personalization_assets.retrieval import PURPOSE_CONTROL, PURPOSE_SEGMENT
from personalization_assets.segmentation import SegmentCatalog

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
)


def variant_id(segment: str, arm: str) -> str:
    return CONTROL_VARIANT_ID if arm == CONTROL_ARM else f"{segment}:{arm}"


def _documents(retrieved: pd.DataFrame, corpus: pd.DataFrame) -> tuple[PromptDocument, ...]:
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
    messages = render_messages(
        prompts,
        tone=tone,
        company_name=config.company_name,
        goal=config.goal,
        segment_name=name,
        segment_description=description,
        documents=documents,
        body_min_chars=config.body_min_chars,
        body_max_chars=config.body_max_chars,
    )
    return VariantRequest(
        segment_id=segment,
        variant_id=variant_id(segment, arm),
        arm=arm,
        tone=tone,
        company_name=config.company_name,
        goal=config.goal,
        documents=documents,
        messages=tuple(messages),
        prompt_sha256=prompt_sha256(messages),
        body_min_chars=config.body_min_chars,
        body_max_chars=config.body_max_chars,
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
        control_docs = _documents(here[here["purpose"] == PURPOSE_CONTROL], corpus)
        segment_docs = _documents(here[here["purpose"] == PURPOSE_SEGMENT], corpus)
        requests.append(
            _request(config, prompts, segment=segment_id, arm=CONTROL_ARM, tone=prompts.control,
                     name=GENERIC_SEGMENT_NAME, description=GENERIC_SEGMENT_DESCRIPTION, documents=control_docs)
        )
        for arm in config.arms:
            if arm == CONTROL_ARM:
                continue
            requests.append(
                _request(config, prompts, segment=segment_id, arm=arm, tone=prompts.tone(arm),
                         name=segment.name, description=segment.description, documents=segment_docs)
            )
    return requests


def variants_table(requests: Sequence[VariantRequest], generated: Sequence[GeneratedVariant]) -> pd.DataFrame:
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
        }
        for request, result in zip(requests, generated, strict=True)
    ]
    return pd.DataFrame(rows, columns=list(VARIANT_COLUMNS))
