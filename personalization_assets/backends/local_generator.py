"""The embedded generator backend: a deterministic template composer.

The embedded backend (`local-template`) is deterministic: it builds subject, body and call to
action from the retrieved documents and the tone file's phrase bank, and cites the documents it
quotes. It invents nothing, so its output is a fair, safe baseline and works offline.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from personalization_assets.messages.generation import (
    DANGLING_WORDS,
    SUBJECT_MAX_CHARS,
    GeneratedVariant,
    VariantRequest,
)
from personalization_assets.messages.prompts import (
    PromptDocument,
    fill,
    looks_like_instruction,
)

LOCAL_BACKEND = "local-template"
LOCAL_MODEL = "template-v1"
TRAILING_PUNCTUATION = ":;,-—–"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MARKDOWN = re.compile(r"[*_`#>]+")
# A rough but stable token estimate (about four characters per token for English prose).
CHARS_PER_TOKEN = 4


def _choice(options: Sequence[str], key: str) -> str:
    """A stable pick: the same variant always gets the same phrase, different variants vary."""
    return options[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(options)]


def fit_subject(text: str, limit: int = SUBJECT_MAX_CHARS) -> str:
    """Plain text within `limit` characters, shortened at a word boundary, never mid-word.

    Whole words are kept while they fit; then trailing dangling words ("the", "to") and lone
    punctuation are dropped, because a subject ending on them reads as broken. A first word longer
    than the limit leaves an empty subject, which validation blocks.
    """
    words = " ".join(MARKDOWN.sub("", text).split()).split(" ")
    kept: list[str] = []
    for word in words:
        if len(" ".join([*kept, word])) > limit:
            break
        kept.append(word)
    if len(kept) < len(words):
        while kept and (kept[-1].lower().strip(TRAILING_PUNCTUATION) in DANGLING_WORDS or not kept[-1].strip(TRAILING_PUNCTUATION)):
            kept.pop()
    return " ".join(kept).rstrip(TRAILING_PUNCTUATION + " ")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(" ".join(text.split())) if s.strip()]


@dataclass(frozen=True)
class Layout:
    """How a tone arranges the documents' sentences (the tone file's `structure`)."""

    quotas: tuple[int, ...]  # sentences per cited document on the first pass, in rank order
    facts_as_list: bool = False  # later documents' sentences as "- " lines (informational)
    timely_first: bool = False  # sentences with a date or period first (urgent)


LAYOUTS = {
    "brief": Layout(quotas=(2, 0), timely_first=True),
    "detailed": Layout(quotas=(2, 3), facts_as_list=True),
    "conversational": Layout(quotas=(2, 1)),
    "plain": Layout(quotas=(2, 2)),
}
CONTEXT_PRONOUNS = frozenset("it this that these those they them".split())
TIMELY = re.compile(
    r"\b(19|20)\d\d\b|\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b|\b(until|through|from|ends?|starts?|season)\b",
    re.IGNORECASE,
)


def _leans_on_context(sentence: str) -> bool:
    """'Bring it to any store...' needs the sentence before it; quoted alone it means nothing."""
    return any(word in CONTEXT_PRONOUNS for word in re.findall(r"[a-z]+", sentence.lower())[:3])


def _usable_sentences(document: PromptDocument, layout: Layout, primary: bool) -> list[str]:
    """The document's sentences a tone may quote, in the order it wants them.

    Never anything addressed to a model; from supporting documents, no questions (quoted alone
    they read as non sequiturs); timely sentences first for urgent, facts with figures first for
    a details list. Sorting is stable, so document order decides otherwise.
    """
    pool = [s for s in sentences(document.content) if not looks_like_instruction(s)]
    if not primary:
        pool = [s for s in pool if not s.endswith("?") and not _leans_on_context(s)]
        if layout.facts_as_list:
            pool = sorted(pool, key=lambda s: not any(ch.isdigit() for ch in s))
    if layout.timely_first:
        pool = sorted(pool, key=lambda s: TIMELY.search(s) is None)
    return pool


def _select_sentences(
    documents: Sequence[PromptDocument], layout: Layout, render: Callable[[list[list[str]]], str], minimum: int, budget: int
) -> list[list[str]]:
    """Whole sentences per document: the layout's quotas first, then more only while the rendered
    body is shorter than `minimum`; a sentence that would take the body past `budget` is left out.
    Lengths are measured on the rendered body itself, so the bounds hold exactly."""
    pools = [_usable_sentences(doc, layout, primary=i == 0) for i, doc in enumerate(documents)]
    quotas = [layout.quotas[i] if i < len(layout.quotas) else 0 for i in range(len(pools))]
    first_pass = [(i, s) for i, pool in enumerate(pools) for s in pool[: quotas[i]]]
    second_pass = [(i, s) for i, pool in enumerate(pools) for s in pool[quotas[i] :]]
    chosen: list[list[str]] = [[] for _ in pools]
    for position, (index, sentence) in enumerate(first_pass + second_pass):
        if position >= len(first_pass) and len(render(chosen)) >= minimum:
            break
        chosen[index].append(sentence)
        if len(render(chosen)) > budget:
            chosen[index].pop()
            break
    return chosen


def _arrange(chosen: list[list[str]], layout: Layout) -> list[str]:
    paragraphs = [" ".join(chosen[0])] if chosen and chosen[0] else []
    later = [s for group in chosen[1:] for s in group]
    if later and layout.facts_as_list:
        paragraphs.append("Key details:\n" + "\n".join(f"- {s}" for s in later))
    else:
        paragraphs += [" ".join(group) for group in chosen[1:] if group]
    return paragraphs


def compose_local(request: VariantRequest) -> GeneratedVariant:
    """The embedded template generator: the tone's frame around sentences quoted from the documents."""
    tone = request.tone
    if not request.documents:
        return GeneratedVariant("", "", "", (), LOCAL_BACKEND, LOCAL_MODEL, refusal="no approved documents retrieved")
    layout = LAYOUTS[tone.structure]
    primary = request.documents[0]
    candidates = request.documents[: max(len(layout.quotas), 1)]
    values = {"company_name": request.company_name, "title": primary.title}
    subject = fit_subject(fill(_choice(tone.subject_patterns, request.variant_id), values))
    opener = fill(_choice(tone.openers, request.variant_id + ":opener"), values)
    bridge = fill(_choice(tone.bridges, request.variant_id + ":bridge"), values) if tone.bridges else ""
    closing_line = " ".join(p for p in (fill(tone.closing, values), f"{tone.cta}: {primary.source_url}") if p)
    greeting, intro = "Hi {{first_name}},", " ".join(p for p in (opener, bridge) if p)
    signature = f"The {request.company_name} team"

    def render(chosen: list[list[str]]) -> str:
        return "\n\n".join([greeting, intro, *_arrange(chosen, layout), closing_line, signature])

    chosen = _select_sentences(candidates, layout, render, request.body_length.min_chars, request.body_length.max_chars)
    body = render(chosen)
    cited = tuple(doc.document_id for doc, group in zip(candidates, chosen) if group) or (primary.document_id,)
    return GeneratedVariant(
        subject=subject,
        body=body,
        cta=tone.cta,
        citations=cited,
        backend=LOCAL_BACKEND,
        model=LOCAL_MODEL,
        input_tokens=sum(len(m["content"]) for m in request.messages) // CHARS_PER_TOKEN,
        output_tokens=(len(subject) + len(body) + len(tone.cta)) // CHARS_PER_TOKEN,
        cost_usd=0.0,
    )
