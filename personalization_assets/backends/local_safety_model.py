"""The embedded backend's trained harm classifier, beside its lexicon: one class per harm
category plus benign (`safety/classifier.py` is the model).

The lexicon catches what its phrases name; the classifier generalizes to wording no phrase lists
("nobody needs you", "make your last hike a step off the edge"). It can raise a category to
Medium (4), never to High, and never lowers what the lexicon found.

Its training texts, `data/safety_training.csv`, are built by `benchmarks/build_safety_training.py`
(sources listed there). The decision threshold was chosen by cross-validation on the tune half of
the first evaluation set only; docs/safety.md reports the held-out sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from personalization_assets.safety.classifier import TextClassifier
from personalization_assets.safety.policy import CATEGORIES, MEDIUM

HARM_CLASSIFIER = TextClassifier(Path(__file__).parent / "data" / "safety_training.csv", regularization=20.0)
# A category's probability at or above this raises it to Medium (cross-validated on the tune half).
THRESHOLD = 0.5


def severities_from(probability: Mapping[str, float], threshold: float = THRESHOLD) -> dict[str, int]:
    return {category: MEDIUM for category in CATEGORIES if probability.get(category, 0.0) >= threshold}


def severities(texts: Sequence[str]) -> list[dict[str, int]]:
    """Per text, Medium for each category the classifier is confident of; categories below the
    threshold are absent. One batch."""
    return [severities_from(probability) for probability in HARM_CLASSIFIER.probabilities(texts)]
