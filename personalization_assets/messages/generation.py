"""What every generator backend answers: one request per variant, one generated variant back.

A request carries segment-level facts only (tone, company, goal, retrieved documents, the
rendered prompt messages), never a customer value: merge fields are filled in locally after
generation (`messages/rendering.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from personalization_assets.campaign.config import BodyLength
from personalization_assets.messages.prompts import PromptDocument, ToneSpec

SUBJECT_MAX_CHARS = 60
# Words a shortened subject must not end on ("... for the").
DANGLING_WORDS = frozenset("a an and at by for from in into of on or our the to with your".split())


@dataclass(frozen=True)
class VariantRequest:
    """Everything a backend needs to write one variant: segment-level facts only, never a customer."""

    segment_id: str
    variant_id: str
    arm: str
    tone: ToneSpec
    company_name: str
    goal: str
    documents: tuple[PromptDocument, ...]
    messages: tuple[Mapping[str, str], ...]
    prompt_sha256: str
    body_length: BodyLength


@dataclass(frozen=True)
class GeneratedVariant:
    subject: str
    body: str
    cta: str
    citations: tuple[str, ...]
    backend: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    # Set when the backend refused or failed; the variant is then blocked with this reason.
    refusal: str | None = None
    extras: Mapping[str, object] = field(default_factory=dict)
