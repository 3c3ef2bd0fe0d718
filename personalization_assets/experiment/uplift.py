"""The per-customer model: a T-learner on scikit-learn estimators, trained on a randomized test.

One outcome model per arm, each fitted on the customers randomized to that arm, predicts every
customer's chance of the primary metric under every arm; the personalized policy sends each
customer the arm with the highest prediction. Features are the customers contract's columns (tier
as its rank) and the segment. Everything runs locally: no customer value leaves the machine.

Pure logic, no Dagster import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from personalization_assets.explain.models import MODEL_FEATURES, feature_frame

SEGMENT_FEATURE = "segment"
UPLIFT_FEATURES = (*MODEL_FEATURES, SEGMENT_FEATURE)


def uplift_features(customers: pd.DataFrame, segments: Sequence[str]) -> pd.DataFrame:
    """The model's features: the contract's numbers, tier's rank, and the segment as its catalog
    position (a category for the estimators)."""
    frame = feature_frame(customers)
    frame[SEGMENT_FEATURE] = pd.Categorical(customers["segment"].astype(str), categories=list(segments)).codes.astype(float)
    return frame[list(UPLIFT_FEATURES)]


def _estimator(kind: str, n_features: int, n_segments: int, seed: int, continuous: bool = False):
    """A fresh outcome model: gradient boosting (interactions found on its own), or a logistic
    regression on standardized features with the segment one-hot (fast, for simulations); for a
    continuous outcome the same as regressors (a ridge regression for `logistic`). The segment is
    the last of the `n_features` columns."""
    segment_column = n_features - 1
    if kind == "gradient_boosting":
        # Shallow trees, large leaves and a fixed seed: stable predictions for a stable rollout.
        boosting = HistGradientBoostingRegressor if continuous else HistGradientBoostingClassifier
        return boosting(
            max_iter=100, learning_rate=0.05, max_depth=3, min_samples_leaf=300, l2_regularization=1.0,
            categorical_features=[segment_column], early_stopping=False, random_state=seed,
        )
    if kind == "logistic":
        numeric = list(range(segment_column))
        encode = ColumnTransformer([("numbers", StandardScaler(), numeric),
                                    ("segment", OneHotEncoder(categories=[np.arange(n_segments, dtype=float)], handle_unknown="ignore"),
                                     [segment_column])])
        return make_pipeline(encode, Ridge(alpha=1.0) if continuous else LogisticRegression(C=1.0, max_iter=500))
    raise ValueError(f"unknown estimator {kind!r}")


@dataclass
class _Constant:
    """The model of an arm whose outcomes are all equal (no event yet): that value for everyone."""

    value: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.full(len(features), self.value)


def _expected_outcome(model, matrix: np.ndarray) -> np.ndarray:
    """A classifier's probability of the outcome, or a regressor's (or a constant's) prediction."""
    return model.predict_proba(matrix)[:, 1] if hasattr(model, "predict_proba") else model.predict(matrix)


@dataclass
class TLearner:
    """One fitted outcome model per arm; `available[s, a]` says whether arm a can be sent in segment s."""

    arms: tuple[str, ...]
    models: tuple[object | None, ...]  # None: the arm had no customers in the training data
    available: np.ndarray

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """(customers, arms) predicted outcome probabilities (expected values for a continuous
        outcome); NaN where an arm cannot be sent."""
        matrix = features.to_numpy(dtype=float)
        segment = matrix[:, -1].astype(np.intp)
        out = np.full((len(matrix), len(self.arms)), np.nan)
        for position, model in enumerate(self.models):
            if model is None:
                continue
            rows = self.available[segment, position]
            if rows.any():
                out[rows, position] = _expected_outcome(model, matrix[rows])
        return out

    def best_arms(self, predictions: np.ndarray) -> np.ndarray:
        """Each customer's arm of highest prediction (its position in `arms`); ties go to the
        earlier arm, control first."""
        return np.nanargmax(np.where(np.isnan(predictions), -np.inf, predictions), axis=1)


def fit_t_learner(
    features: pd.DataFrame, arm_codes: np.ndarray, outcome: np.ndarray, arms: Sequence[str], available: np.ndarray, *,
    estimator: str, seed: int, continuous: bool = False,
) -> TLearner:
    """Fit one outcome model per arm on that arm's customers (a T-learner); regressors when the
    outcome is `continuous` (revenue), else classifiers of the 0/1 outcome."""
    matrix = features.to_numpy(dtype=float)
    outcome = np.asarray(outcome, dtype=float)
    models: list[object | None] = []
    for position in range(len(arms)):
        rows = arm_codes == position
        y = outcome[rows]
        if not rows.any():
            models.append(None)
        elif np.all(y == y[0]):
            models.append(_Constant(float(y[0])))
        else:
            model = _estimator(estimator, matrix.shape[1], available.shape[0], seed, continuous)
            models.append(model.fit(matrix[rows], y if continuous else y.astype(int)))
    return TLearner(tuple(arms), tuple(models), available)


def choice_drivers(model: TLearner, features: pd.DataFrame, *, seed: int, sample_size: int = 20_000) -> pd.DataFrame:
    """What drives the policy's choice: per feature, the share of customers whose chosen arm
    changes when that feature's values are shuffled among customers (permutation importance of
    the choice), on a seeded sample; largest first."""
    rng = np.random.default_rng(seed)
    sample = features if len(features) <= sample_size else features.iloc[np.sort(rng.choice(len(features), sample_size, replace=False))]
    sample = sample.reset_index(drop=True)
    chosen = model.best_arms(model.predict(sample))
    rows = []
    for feature in sample.columns:
        shuffled = sample.copy()
        shuffled[feature] = rng.permutation(shuffled[feature].to_numpy())
        changed = model.best_arms(model.predict(shuffled)) != chosen
        rows.append({"feature": feature, "choices_changed": float(changed.mean())})
    return pd.DataFrame(rows).sort_values(["choices_changed", "feature"], ascending=[False, True], ignore_index=True)
