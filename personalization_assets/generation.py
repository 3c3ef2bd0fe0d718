"""Message variants: the request every generator backend answers, and the embedded composer.

The embedded backend (`local-template`) is deterministic: it builds subject, body and call to
action from the retrieved documents and the tone file's phrase bank, and cites the documents it
quotes. It invents nothing, so its output is a fair, safe baseline and works offline.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from personalization_assets.prompts import PromptDocument, ToneSpec, fill

SUBJECT_MAX_CHARS = 60
LOCAL_BACKEND = "local-template"
LOCAL_MODEL = "template-v1"
DANGLING_WORDS = frozenset("a an and at by for from in into of on or our the to with your".split())
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MARKDOWN = re.compile(r"[*_`#>]+")
# A rough but stable token estimate (about four characters per token for English prose).
CHARS_PER_TOKEN = 4


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
    body_min_chars: int
    body_max_chars: int


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


def _choice(options: Sequence[str], key: str) -> str:
    """A stable pick: the same variant always gets the same phrase, different variants vary."""
    return options[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(options)]


def fit_subject(text: str, limit: int = SUBJECT_MAX_CHARS) -> str:
    """Plain text within `limit` characters, shortened at a word boundary, never mid-word."""
    text = " ".join(MARKDOWN.sub("", text).split())
    if len(text) <= limit:
        return text
    words = text[: limit + 1].rsplit(" ", 1)[0].split(" ")
    # A subject that ends on "the" or "to" reads as broken even when no word was cut.
    while len(words) > 1 and words[-1].lower().strip(":;,-—–") in DANGLING_WORDS:
        words.pop()
    return " ".join(words).rstrip(" :;,-—–")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def _paragraphs_within(documents: Sequence[PromptDocument], budget: int, minimum: int) -> list[str]:
    """Whole sentences from the documents, one paragraph per document, in rank order.

    First up to two sentences of each document; then, only while the body is shorter than
    `minimum`, the following sentences. Never exceeds `budget` characters.
    """
    pools = [sentences(doc.content) for doc in documents]
    first_pass = [(index, s) for index, pool in enumerate(pools) for s in pool[:2]]
    second_pass = [(index, s) for index, pool in enumerate(pools) for s in pool[2:]]
    chosen: list[list[str]] = [[] for _ in pools]
    used = 0
    for position, (index, sentence) in enumerate(first_pass + second_pass):
        if (position >= len(first_pass) and used >= minimum) or used + len(sentence) + 1 > budget:
            break
        chosen[index].append(sentence)
        used += len(sentence) + 1
    return [" ".join(group) for group in chosen if group]


def compose_local(request: VariantRequest) -> GeneratedVariant:
    """The embedded template generator."""
    tone = request.tone
    if not request.documents:
        return GeneratedVariant("", "", "", (), LOCAL_BACKEND, LOCAL_MODEL, refusal="no approved documents retrieved")
    primary = request.documents[0]
    cited = request.documents[:2]
    values = {"company_name": request.company_name, "title": primary.title}
    subject = fit_subject(fill(_choice(tone.subject_patterns, request.variant_id), values))

    opener = fill(_choice(tone.openers, request.variant_id + ":opener"), values)
    closing = fill(tone.closing, values)
    link_line = f"{tone.cta}: {primary.source_url}"
    frame = ["Hi {{first_name}},", opener, closing, link_line, f"The {request.company_name} team"]
    fixed = sum(len(part) + 2 for part in frame)
    paragraphs = _paragraphs_within(
        cited, budget=request.body_max_chars - fixed, minimum=max(request.body_min_chars - fixed, 0)
    )
    body_parts = [frame[0], opener, *paragraphs, " ".join(p for p in (closing, link_line) if p), frame[-1]]
    body = "\n\n".join(body_parts)
    output_chars = len(subject) + len(body) + len(tone.cta)
    return GeneratedVariant(
        subject=subject,
        body=body,
        cta=tone.cta,
        citations=tuple(doc.document_id for doc in cited),
        backend=LOCAL_BACKEND,
        model=LOCAL_MODEL,
        input_tokens=sum(len(m["content"]) for m in request.messages) // CHARS_PER_TOKEN,
        output_tokens=output_chars // CHARS_PER_TOKEN,
        cost_usd=0.0,
    )
