"""A small trained text classifier beside the embedded lexicon: word and character n-grams into a
logistic regression, one class per harm category plus benign.

The lexicon catches what its phrases name; the classifier generalizes to wording no phrase lists
("nobody needs you", "make your last hike a step off the edge"). It reads the deobfuscated text
(`safety/text.deobfuscate`), so leetspeak and look-alike letters reach it as words. It can raise a
category to Medium (4), never to High, and never lowers what the lexicon found.

It is trained, in this process, the first time it is asked, from the texts packaged in
`data/safety_training.csv` (built by `benchmarks/build_safety_training.py` from the tune half of
the evaluation set, the test fixture and the sample's content documents): about half a second,
nothing downloaded, nothing pickled, so it never depends on a saved model matching the installed
scikit-learn. The decision threshold was chosen by cross-validation on the tune half only;
docs/safety.md reports the held-out half.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

from personalization_assets.safety.policy import CATEGORIES, MEDIUM
from personalization_assets.safety.text import deobfuscate

TRAINING_FILE = Path(__file__).parent / "data" / "safety_training.csv"
BENIGN = "benign"
# A category's probability at or above this raises it to Medium (cross-validated on the tune half).
THRESHOLD = 0.5


def training_texts(path: Path = TRAINING_FILE) -> tuple[list[str], list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [row["text"] for row in rows], [row["label"] for row in rows]


def build_pipeline():
    """The untrained model: the same one for the shipped classifier and the cross-validation."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion([
        ("characters", TfidfVectorizer(preprocessor=deobfuscate, analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=1)),
        ("words", TfidfVectorizer(preprocessor=deobfuscate, ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w[\w']*\b")),
    ])
    return make_pipeline(features, LogisticRegression(C=20.0, class_weight="balanced", max_iter=2000))


@functools.lru_cache(maxsize=1)
def _trained():
    texts, labels = training_texts()
    return build_pipeline().fit(texts, labels)


def probabilities(texts: Sequence[str]) -> list[Mapping[str, float]]:
    """Each text's probability per class (the four categories and benign), in one batch."""
    if not texts:
        return []
    model = _trained()
    classes = list(model.classes_)
    return [dict(zip(classes, map(float, row))) for row in model.predict_proba(texts)]


def severities_from(probability: Mapping[str, float], threshold: float = THRESHOLD) -> dict[str, int]:
    return {category: MEDIUM for category in CATEGORIES if probability.get(category, 0.0) >= threshold}


def severities(texts: Sequence[str]) -> list[dict[str, int]]:
    """Per text, Medium for each category the classifier is confident of; categories below the
    threshold are absent. One batch: the features of every text are computed in one call."""
    return [severities_from(probability) for probability in probabilities(texts)]
