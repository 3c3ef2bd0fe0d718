"""Quality rules every variant must pass, whatever produced it (template or LLM).

Format (subject length and completeness, no markdown, body length, a call to action, the
`{{first_name}}` greeting, 1-3 citations) and grounding (every number, price or percentage appears
in a cited document). Links, placeholders, uncited documents and unbacked claims are compliance
rules in `safety.find_compliance_hits`; `quality_failures` returns both, so a repair prompt and
the screening verdict see the same list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from personalization_assets.campaign.config import BodyLength
from personalization_assets.messages.generation import DANGLING_WORDS, SUBJECT_MAX_CHARS
from personalization_assets.messages.prompts import PromptDocument
from personalization_assets.safety.rules import find_compliance_hits, find_urls

MIN_CITATIONS, MAX_CITATIONS = 1, 3
MARKDOWN_PATTERNS = (
    re.compile(r"\*\*|__"),  # bold
    re.compile(r"(?m)^\s{0,3}#{1,6}\s"),  # headings
    re.compile(r"`"),  # code
    re.compile(r"\[[^\]]+\]\([^)]+\)"),  # links
    re.compile(r"(?i)^\s*subject\s*:"),  # "Subject:" echoed into the subject itself
)
# Numbers as written in copy: $1,500.00, 20%, 45-minute, 2026. Compared without separators.
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
GREETING = re.compile(r"^\s*(hi|hello|dear|hey)\s+\{\{\s*first_name\s*\}\}", re.IGNORECASE)
RULE_DESCRIPTIONS = {
    "subject_too_long": f"subject longer than {SUBJECT_MAX_CHARS} characters",
    "subject_incomplete": "subject ends mid-phrase (a dangling word or an ellipsis)",
    "subject_empty": "subject is empty",
    "markdown": "markdown formatting in subject or body",
    "body_length": "body length outside the campaign's bounds",
    "missing_cta": "no call to action in the body",
    "missing_greeting": "body does not open with a greeting that uses {{first_name}}",
    "citation_count": f"needs {MIN_CITATIONS} to {MAX_CITATIONS} citations",
    "ungrounded_number": "a number, price or percentage that no cited document states",
}


@dataclass(frozen=True)
class SourceDocument:
    document_id: str
    text: str  # title and content: what a variant may quote
    source_url: str


def sources_from(documents: Sequence[PromptDocument]) -> dict[str, SourceDocument]:
    """What each retrieved document lets a variant say, by document id."""
    return {d.document_id: SourceDocument(d.document_id, f"{d.title}\n{d.content}", d.source_url) for d in documents}


def _numbers(text: str) -> set[str]:
    """Numbers in the text, normalized ('1,500' -> '1500', '20.0' -> '20'), outside URLs."""
    for url in find_urls(text):
        text = text.replace(url, " ")
    found = set()
    for raw in NUMBER.findall(text):
        value = raw.replace(",", "").rstrip(".")
        if "." in value:
            value = value.rstrip("0").rstrip(".")
        found.add(value)
    return found


def ungrounded_numbers(text: str, sources: Sequence[str]) -> list[str]:
    allowed = set().union(*(_numbers(s) for s in sources)) if sources else set()
    return sorted(_numbers(text) - allowed)


def format_failures(subject: str, body: str, cta: str, citations: Sequence[str], *, body_length: BodyLength) -> list[str]:
    failures = []
    words = subject.split()
    if not words:
        failures.append("subject_empty")
    if len(subject) > SUBJECT_MAX_CHARS:
        failures.append("subject_too_long")
    if words and (words[-1].lower().strip(":;,-") in DANGLING_WORDS or subject.rstrip().endswith(("...", "…"))):
        failures.append("subject_incomplete")
    if any(p.search(subject) or p.search(body) for p in MARKDOWN_PATTERNS):
        failures.append("markdown")
    if not body_length.admits(body):
        failures.append("body_length")
    if not cta.strip() or cta.strip().lower() not in body.lower():
        failures.append("missing_cta")
    if not GREETING.match(body):
        failures.append("missing_greeting")
    if not MIN_CITATIONS <= len(citations) <= MAX_CITATIONS:
        failures.append("citation_count")
    return failures


def quality_failures(
    subject: str,
    body: str,
    cta: str,
    citations: Sequence[str],
    *,
    retrieved: Mapping[str, SourceDocument],
    body_length: BodyLength,
) -> list[str]:
    """Every quality and compliance rule the variant breaks, as sorted rule ids."""
    cited = [retrieved[c] for c in citations if c in retrieved]
    failures = format_failures(subject, body, cta, citations, body_length=body_length)
    if ungrounded_numbers(f"{subject}\n{body}", [doc.text for doc in cited]):
        failures.append("ungrounded_number")
    failures += find_compliance_hits(
        subject,
        body,
        approved_urls={doc.source_url for doc in cited},
        citations=list(citations),
        retrieved_ids=set(retrieved),
        source_text="\n".join(doc.text for doc in cited),
    )
    return sorted(set(failures))


def describe(failures: Sequence[str], subject: str = "", body: str = "", sources: Sequence[str] = ()) -> list[str]:
    """Human-readable failures, for a repair prompt and for the verdict's reasons."""
    lines = []
    for rule in failures:
        text = RULE_DESCRIPTIONS.get(rule, f"compliance rule {rule}")
        if rule == "ungrounded_number":
            text += ": " + ", ".join(ungrounded_numbers(f"{subject}\n{body}", sources))
        lines.append(f"{rule}: {text}")
    return lines
