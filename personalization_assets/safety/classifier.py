"""The screen's small trained text classifiers: word and character n-grams into a logistic
regression, trained in this process from a packaged CSV of labelled texts.

Two use it: the embedded backend's harm classifier (`backends/local_safety_model.py`, one class
per harm category plus benign) and the compliance rules' claim classifier (`safety/claims.py`,
one class per kind of marketing claim plus none). Each reads the deobfuscated text
(`safety/text.deobfuscate`), so leetspeak and look-alike letters reach it as words.

A model is trained the first time it is asked (well under a second for a few thousand texts),
from its CSV (`text,label`); nothing is downloaded or unpickled, so it never depends on a saved
model matching the installed scikit-learn.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from personalization_assets.safety.text import deobfuscate


def training_texts(path: Path) -> tuple[list[str], list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [row["text"] for row in rows], [row["label"] for row in rows]


def build_pipeline(regularization: float):
    """The untrained model: the same one for a shipped classifier and its cross-validation.
    `regularization` is the logistic regression's C (larger fits the training texts closer)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion([
        ("characters", TfidfVectorizer(preprocessor=deobfuscate, analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=1)),
        ("words", TfidfVectorizer(preprocessor=deobfuscate, ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w[\w']*\b")),
    ])
    return make_pipeline(features, LogisticRegression(C=regularization, class_weight="balanced", max_iter=2000))


@functools.lru_cache(maxsize=4)
def _trained(path: Path, regularization: float):
    return build_pipeline(regularization).fit(*training_texts(path))


@dataclass(frozen=True)
class TextClassifier:
    """A classifier over the labels of `training_file`, trained on first use."""

    training_file: Path
    regularization: float

    def probabilities(self, texts: Sequence[str]) -> list[Mapping[str, float]]:
        """Each text's probability per class, in one batch (the features of every text are
        computed in one call)."""
        if not texts:
            return []
        model = _trained(self.training_file, self.regularization)
        classes = list(model.classes_)
        return [dict(zip(classes, map(float, row))) for row in model.predict_proba(list(texts))]

    def labels_at(self, texts: Sequence[str], threshold: float) -> list[frozenset[str]]:
        """Per text, the classes whose probability is at least `threshold`."""
        return [frozenset(label for label, p in probability.items() if p >= threshold)
                for probability in self.probabilities(texts)]
