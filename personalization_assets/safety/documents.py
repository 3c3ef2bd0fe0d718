"""Screening the approved content corpus when it is indexed: defense in depth before generation.

A variant quotes its cited documents, so a harmful sentence, a script tag or template syntax in a
document would be one generation away from an email. Every document's title and content goes
through the same screen as a variant (`screening.screen`: the backend's harm categories and the
campaign's blocklists) plus the rules that apply to source text: health or financial promises,
template leftovers, and text that must never reach an email whatever its words (markup, control
and bidi characters, template syntax: `safety/text.UNSAFE_TEXT_PATTERNS`). A document that fails
is quarantined: it is kept out of the search index, so it is never retrieved or cited, and listed
with its reasons. Guarantee and urgency claims are not screened here: a document is what backs
them in a variant.
"""

from __future__ import annotations

import pandas as pd

from personalization_assets.safety.policy import SafetyPolicy
from personalization_assets.safety.rules import find_source_hits
from personalization_assets.safety.screening import (
    CATEGORY_COLUMNS,
    Analyze,
    screen,
    verdict_fields,
)

APPROVED, QUARANTINED = "approved", "quarantined"
DOCUMENT_VERDICT_COLUMNS = ("document_id", "decision", *CATEGORY_COLUMNS.values(), "blocklist_hits", "rule_hits", "reasons",
                            "policy_version", "backend")


def screen_documents(corpus: pd.DataFrame, *, analyze: Analyze, policy: SafetyPolicy, backend: str) -> pd.DataFrame:
    """One verdict row per document (DOCUMENT_VERDICT_COLUMNS): approved, or quarantined with its reasons."""
    titles, contents = corpus["title"].astype(str).tolist(), corpus["content"].astype(str).tolist()
    rule_hits = [find_source_hits(f"{title}\n{content}") for title, content in zip(titles, contents)]
    screened = screen(titles, contents, rule_hits, analyze=analyze, policy=policy)
    rows = [
        {
            "document_id": document_id,
            "decision": APPROVED if result.decision.decision == "approved" else QUARANTINED,
            **verdict_fields(result, policy, backend),
        }
        for document_id, result in zip(corpus["document_id"], screened, strict=True)
    ]
    return pd.DataFrame(rows, columns=list(DOCUMENT_VERDICT_COLUMNS))
