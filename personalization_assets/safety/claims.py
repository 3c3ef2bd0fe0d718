"""The claim classifier beside the compliance rules' phrase tables: it recognises false urgency,
unverifiable guarantees and health or financial promises worded in ways no phrase lists ("Tick
tock, your VIP window is closing", "Our boots never fail. Not once, not ever", "a grounding mat
that cures chronic fatigue").

One class per rule plus `none` (`safety/classifier.py` is the model). It reads each sentence
separately, so one claim in a long body is not diluted by the sentences around it. Its training
texts, `data/claim_training.csv`, are built by `benchmarks/build_safety_training.py` from every
evaluation set measured so far; the regularization and the threshold were chosen by training on
two of those sets and scoring the third, in turn (docs/safety.md). A newer held-out set, never
read by the build, measures it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from personalization_assets.safety.classifier import TextClassifier
from personalization_assets.safety.text import normalize

CLAIM_RULES = ("false_urgency", "health_financial_promise", "unverifiable_guarantee")
NO_CLAIM = "none"
CLAIM_CLASSIFIER = TextClassifier(Path(__file__).parent / "data" / "claim_training.csv", regularization=5.0)
# A sentence whose probability for a rule is at least this makes that claim (chosen by training on
# two evaluation sets and scoring the third).
THRESHOLD = 0.5
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def sentences(text: str) -> list[str]:
    return [sentence for sentence in (part.strip() for part in _SENTENCE_END.split(normalize(text))) if sentence]


def claims_in(texts: Sequence[str]) -> list[frozenset[str]]:
    """Per text, the rules (of CLAIM_RULES) one of its sentences breaks, judged by the classifier;
    every sentence of every text in one batch."""
    split = [sentences(text) for text in texts]
    found = iter(CLAIM_CLASSIFIER.labels_at([s for text in split for s in text], THRESHOLD))
    return [frozenset().union(*(next(found) for _ in text)) - {NO_CLAIM} for text in split]
