"""Explainability: what defines each segment, which features predict response and whether the
treatment effect differs by them, and a k-means exploration explained by a shallow tree.

Pure logic (no Dagster import). Everything that fits a model works on a seeded random sample
(`DEFAULT_SAMPLE_SIZE` rows) so it stays fast on a million customers; the report says so.
Segment profiles are exact (computed on every customer).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from personalization_assets.audience.segmentation import SegmentCatalog

DEFAULT_SAMPLE_SIZE = 50_000
DEFAULT_SEED = 20260105
TIER_RANK = {"Bronze": 0, "Silver": 1, "Gold": 2}
# Customer features the models use (all in the customers contract). Tier enters as its rank.
NUMERIC_FEATURES = (
    "age",
    "purchase_frequency",
    "avg_order_value",
    "last_engagement_days",
    "historical_open_rate",
    "historical_click_rate",
)
MODEL_FEATURES = (*NUMERIC_FEATURES, "tier_rank")
FEATURE_LABELS = {
    "age": "age",
    "purchase_frequency": "purchase frequency",
    "avg_order_value": "avg order value",
    "last_engagement_days": "days since last engagement",
    "historical_open_rate": "historical open rate",
    "historical_click_rate": "historical click rate",
    "tier_rank": "tier (0 Bronze, 1 Silver, 2 Gold)",
    "gold_share": "share Gold tier",
}
# Segment profiles: the numeric features plus the share of Gold-tier customers.
PROFILE_FEATURES = (*NUMERIC_FEATURES, "gold_share")
K_RANGE = range(2, 9)
SILHOUETTE_SAMPLE = 3_000
TREE_DEPTH = 3
# Long-tailed columns enter k-means on a log scale, so a few big spenders do not form a cluster alone.
LOG_SCALED = ("purchase_frequency", "avg_order_value", "last_engagement_days")


def feature_frame(customers: pd.DataFrame) -> pd.DataFrame:
    """The model features as floats: the numeric contract columns and the tier's rank."""
    frame = customers[list(NUMERIC_FEATURES)].astype(float)
    frame["tier_rank"] = customers["tier"].astype(str).map(TIER_RANK).astype(float)
    return frame


def seeded_sample_positions(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted row positions of a seeded simple random sample (all rows when n <= size)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


# ---------------------------------------------------------------------------------------------
# Segment profiles


def segment_profiles(customer_segments: pd.DataFrame, catalog: SegmentCatalog) -> pd.DataFrame:
    """Per segment (catalog order) and for the whole population: customers, share, the mean of
    every profile feature, and each mean's standardized difference from the population
    ((segment mean - population mean) / population SD) in `<feature>_std_diff` columns."""
    values = customer_segments[list(NUMERIC_FEATURES)].astype(float)
    values["gold_share"] = customer_segments["tier"].astype(str).eq("Gold").astype(float)
    segments = customer_segments["segment"].astype(str)
    means = values.groupby(segments).mean()
    counts = segments.value_counts()
    population_mean = values.mean()
    population_sd = values.std(ddof=0).replace(0.0, np.nan)
    rows = []
    n_total = len(customer_segments)
    for segment in [*catalog.ids, "population"]:
        if segment == "population":
            mean, n = population_mean, n_total
        else:
            n = int(counts.get(segment, 0))
            mean = means.loc[segment] if segment in means.index else pd.Series(np.nan, index=values.columns)
        row = {"segment": segment, "customers": n, "share": n / n_total if n_total else np.nan}
        for feature in PROFILE_FEATURES:
            row[feature] = float(mean[feature])
            row[f"{feature}_std_diff"] = float((mean[feature] - population_mean[feature]) / population_sd[feature])
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Response model: logistic regression with treatment x feature interactions


@dataclass(frozen=True)
class ResponseModel:
    """Logistic regression of a 0/1 outcome on standardized features, arm indicators and
    arm x feature interactions. `coefficients` has one row per term: term, kind ('intercept',
    'arm', 'feature', 'interaction'), arm, feature, coef, ci_low, ci_high, p_value
    (log-odds; features per standard deviation)."""

    outcome: str
    control: str
    arms: tuple[str, ...]
    features: tuple[str, ...]
    n_used: int
    n_available: int
    seed: int
    coefficients: pd.DataFrame
    converged: bool
    error: str | None = None

    def term(self, kind: str, feature: str | None = None, arm: str | None = None) -> pd.Series:
        rows = self.coefficients
        mask = rows["kind"].eq(kind)
        if feature is not None:
            mask &= rows["feature"].eq(feature)
        if arm is not None:
            mask &= rows["arm"].eq(arm)
        return rows[mask].iloc[0]


def response_sample(
    assignments: pd.DataFrame,
    engagement: pd.DataFrame,
    customer_segments: pd.DataFrame,
    outcome: str,
    *,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = DEFAULT_SEED,
) -> tuple[pd.DataFrame, int]:
    """A seeded sample of the sent customers with arm, outcome and model features; returns it and
    the number of sent customers it was drawn from. Sampling happens before the joins, so the
    cost does not grow with the population beyond one filter."""
    sent = assignments.loc[assignments["sent"].astype(bool), ["customer_id", "arm"]].reset_index(drop=True)
    sample = sent.iloc[seeded_sample_positions(len(sent), sample_size, seed)].reset_index(drop=True)
    # Look the sample up by id (an index lookup, not a validated merge: that costs seconds on a
    # million rows). Both tables have unique ids by contract; a duplicate raises here.
    found = pd.Index(engagement["customer_id"]).get_indexer(sample["customer_id"])
    values = engagement[outcome].to_numpy()
    sample[outcome] = np.where(found >= 0, values[np.maximum(found, 0)], 0).astype(int)  # not in the export: no event
    rows = pd.Index(customer_segments["customer_id"]).get_indexer(sample["customer_id"])
    if (rows < 0).any():
        missing = sample.loc[rows < 0, "customer_id"].head(3).tolist()
        raise ValueError(f"sent customers missing from customer_segments, e.g. {missing}")
    features = feature_frame(customer_segments[[*NUMERIC_FEATURES, "tier"]].iloc[rows].reset_index(drop=True))
    sample = pd.concat([sample[["customer_id", "arm", outcome]], features], axis=1)
    return sample, len(sent)


def fit_response_model(
    sample: pd.DataFrame,
    outcome: str,
    *,
    control: str,
    arms: Sequence[str],
    n_available: int | None = None,
    seed: int = DEFAULT_SEED,
    alpha: float = 0.05,
) -> ResponseModel:
    """logit P(outcome) = b0 + sum_a g_a [arm = a] + sum_f b_f z_f + sum_a sum_f d_af [arm = a] z_f

    z_f are the features standardized on the sample, so g_a is the arm's effect (log odds ratio
    vs control) at the average customer, b_f how feature f predicts response under control, and
    d_af how much arm a's effect changes per standard deviation of f (effect modification).
    Features that are constant in the sample are left out. CIs are Wald intervals."""
    from statsmodels.discrete.discrete_model import Logit

    columns = ["term", "kind", "arm", "feature", "coef", "ci_low", "ci_high", "p_value"]
    treatments = tuple(a for a in arms if a != control and (sample["arm"].astype(str) == a).any())
    n_available = len(sample) if n_available is None else n_available
    values = sample[list(MODEL_FEATURES)].to_numpy(dtype=float)
    spread = values.std(axis=0)
    keep = np.isfinite(spread) & (spread > 0)
    features = tuple(f for f, k in zip(MODEL_FEATURES, keep) if k)
    z = (values[:, keep] - values[:, keep].mean(axis=0)) / spread[keep]
    y = sample[outcome].to_numpy(dtype=float)

    def failed(reason: str) -> ResponseModel:
        return ResponseModel(outcome, control, treatments, features, len(sample), n_available, seed,
                             pd.DataFrame(columns=columns), False, reason)

    if len(sample) == 0 or y.min() == y.max():
        return failed("the outcome does not vary in the sample")
    arm_values = sample["arm"].astype(str).to_numpy()
    indicators = np.column_stack([(arm_values == a).astype(float) for a in treatments]) if treatments else np.empty((len(y), 0))
    interactions = [indicators[:, [i]] * z for i in range(len(treatments))]
    design = np.column_stack([np.ones(len(y)), indicators, z, *interactions])
    terms = [("intercept", "intercept", None, None)]
    terms += [(f"arm[{a}]", "arm", a, None) for a in treatments]
    terms += [(f, "feature", None, f) for f in features]
    terms += [(f"arm[{a}] x {f}", "interaction", a, f) for a in treatments for f in features]
    if len(y) <= design.shape[1] * 5:
        return failed(f"too few customers ({len(y)}) for {design.shape[1]} model terms")
    from threadpoolctl import threadpool_limits

    try:
        # One BLAS thread: the design is small (a sample), and threads contend on two shared cores.
        with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1):
            warnings.simplefilter("always")
            fitted = Logit(y, design).fit(disp=0, method="newton", maxiter=100)
        ci = np.asarray(fitted.conf_int(alpha))
        params, pvalues = np.asarray(fitted.params), np.asarray(fitted.pvalues)
    except Exception as exc:  # singular design, perfect separation: say so rather than fail the report
        return failed(f"the model could not be fitted ({type(exc).__name__}: {exc})")
    converged = bool(fitted.mle_retvals.get("converged", False)) and not any(
        "converge" in str(w.message).lower() for w in caught
    )
    table = pd.DataFrame(
        [
            {"term": t, "kind": kind, "arm": arm, "feature": feature, "coef": params[i],
             "ci_low": ci[i, 0], "ci_high": ci[i, 1], "p_value": pvalues[i]}
            for i, (t, kind, arm, feature) in enumerate(terms)
        ],
        columns=columns,
    )
    return ResponseModel(outcome, control, treatments, features, len(sample), n_available, seed, table, converged)


# ---------------------------------------------------------------------------------------------
# k-means exploration, explained by a shallow decision tree

EXPLORATION_COLUMNS = (
    "cluster",
    "customers",
    "share",
    *[f"mean_{f}" for f in MODEL_FEATURES],
    "top_segment",
    "top_segment_share",
    "tree_rule",
    "k",
    "silhouette",
    "silhouette_by_k",
    "tree_accuracy",
    "tree_depth",
    "tree_text",
    "sample_size",
    "population",
    "seed",
)


def _tier_text(tiers: frozenset[str]) -> str:
    return "tier is " + " or ".join(t for t in TIER_RANK if t in tiers)


def _tree_rules(tree, feature_names: Sequence[str]) -> tuple[dict[int, list[str]], str]:
    """The tree as readable rules: per cluster, the paths that lead to it; and an indented text.

    A subtree whose leaves all predict the same cluster is shown as one leaf (the depth-3 tree
    often splits a node into two leaves of the same class, which explains nothing). Splits on the
    tier's rank read as tier names, narrowed along the path ("tier is Silver", not two splits)."""
    structure = tree.tree_
    left, right = structure.children_left, structure.children_right
    total = structure.weighted_n_node_samples[0]

    def predicted(node: int) -> set[int]:
        if left[node] == right[node]:
            return {int(np.argmax(structure.value[node][0]))}
        return predicted(left[node]) | predicted(right[node])

    rules: dict[int, list[str]] = {}
    lines: list[str] = []

    def walk(node: int, conditions: list[str], depth: int, tiers: frozenset[str]) -> None:
        classes = predicted(node)
        if len(classes) == 1:
            counts = structure.value[node][0]
            cluster = int(tree.classes_[classes.pop()]) + 1
            purity = counts[int(np.argmax(counts))] / counts.sum() if counts.sum() else 0.0
            share = structure.weighted_n_node_samples[node] / total
            detail = f"{'<1%' if 0 < share < 0.005 else f'{share:.0%}'} of customers, {purity:.0%} of them in cluster {cluster}"
            rules.setdefault(cluster, []).append(f"{' and '.join(conditions) or 'everyone'} ({detail})")
            lines.append(f"{'|   ' * depth}--> cluster {cluster} ({detail})")
            return
        name = feature_names[structure.feature[node]]
        threshold = structure.threshold[node]
        for child, below in ((left[node], True), (right[node], False)):
            if name == "tier_rank":
                side = frozenset(t for t, rank in TIER_RANK.items() if (rank <= threshold) == below)
                narrowed = tiers & side
                condition = _tier_text(narrowed)
                path = [c for c in conditions if not c.startswith("tier is ")] + [condition]
            else:
                narrowed = tiers
                condition = f"{name} {'<=' if below else '>'} {threshold:.4g}"
                path = [*conditions, condition]
            lines.append(f"{'|   ' * depth}{condition}")
            walk(child, path, depth + 1, narrowed)

    walk(0, [], 0, frozenset(TIER_RANK))
    return rules, "\n".join(lines)


def explore_clusters(
    customer_segments: pd.DataFrame,
    *,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = DEFAULT_SEED,
    k_range: Sequence[int] = K_RANGE,
    silhouette_sample: int = SILHOUETTE_SAMPLE,
) -> pd.DataFrame:
    """k-means on the standardized model features (the long-tailed counts and amounts on a log
    scale), k chosen by the silhouette score, fitted on a seeded sample; every customer is then
    assigned to the nearest centre. A depth-3 decision tree, on the raw features so that its
    thresholds read in the customers' own units, is trained on 70% of the sample to predict the
    cluster; its accuracy is measured on the other 30%.

    Returns one row per cluster (EXPLORATION_COLUMNS): its size over all customers, feature
    means, the rule segment most of its customers belong to, the tree's rules that lead to it;
    and, repeated on every row, the model-level facts (k, silhouette, tree accuracy, the tree)."""
    # One thread: on two cores shared with the rest of the run, OpenMP's threads wait on each
    # other and k-means gets several times slower (measured 16.6 s vs 2.9 s on 200,000 customers).
    # threadpoolctl limits only the libraries already loaded: import scikit-learn first.
    import sklearn.cluster  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _explore_clusters(customer_segments, sample_size, seed, k_range, silhouette_sample)


def _explore_clusters(customer_segments: pd.DataFrame, sample_size: int, seed: int, k_range: Sequence[int],
                      silhouette_sample: int) -> pd.DataFrame:
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.metrics import silhouette_score
    from sklearn.tree import DecisionTreeClassifier

    population = len(customer_segments)
    features = feature_frame(customer_segments)
    raw = features.to_numpy(dtype=float)
    scaled = raw.copy()
    for column in LOG_SCALED:
        index = MODEL_FEATURES.index(column)
        scaled[:, index] = np.log1p(np.clip(scaled[:, index], 0, None))
    positions = seeded_sample_positions(population, sample_size, seed)
    mean, sd = scaled[positions].mean(axis=0), scaled[positions].std(axis=0)
    standardized = (scaled - mean) / np.where(sd > 0, sd, 1.0)
    sample = standardized[positions]
    candidates = [k for k in k_range if 2 <= k < len(sample)]
    if len(sample) < 20 or not candidates:
        return pd.DataFrame(columns=list(EXPLORATION_COLUMNS))

    scores: dict[int, float] = {}
    models = {}
    for k in candidates:
        # Mini-batch k-means finds good centres fast; a few full Lloyd iterations polish them.
        rough = MiniBatchKMeans(n_clusters=k, n_init=3, batch_size=4096, random_state=seed).fit(sample)
        model = KMeans(n_clusters=k, init=rough.cluster_centers_, n_init=1, random_state=seed).fit(sample)
        if len(np.unique(model.labels_)) < 2:
            continue
        scores[k] = float(
            silhouette_score(sample, model.labels_, sample_size=min(silhouette_sample, len(sample)), random_state=seed)
        )
        models[k] = model
    if not scores:
        return pd.DataFrame(columns=list(EXPLORATION_COLUMNS))
    k = max(scores, key=lambda key: (scores[key], -key))
    labels = models[k].predict(standardized)

    order = np.random.default_rng(seed).permutation(len(positions))
    cut = int(round(len(positions) * 0.7))
    train, test = positions[order[:cut]], positions[order[cut:]]
    tree = DecisionTreeClassifier(max_depth=TREE_DEPTH, random_state=seed).fit(raw[train], labels[train])
    accuracy = float((tree.predict(raw[test]) == labels[test]).mean()) if len(test) else float("nan")
    names = list(MODEL_FEATURES)
    rules, tree_text = _tree_rules(tree, names)

    segment_codes, segment_names = pd.factorize(customer_segments["segment"].astype(str))
    crosstab = np.bincount(labels * len(segment_names) + segment_codes, minlength=k * len(segment_names))
    crosstab = crosstab.reshape(k, len(segment_names))
    rows = []
    for cluster in range(k):
        members = labels == cluster
        n = int(members.sum())
        counts = pd.Series(crosstab[cluster], index=segment_names)
        rows.append(
            {
                "cluster": cluster + 1,
                "customers": n,
                "share": n / population,
                **{f"mean_{f}": float(raw[members, i].mean()) if n else float("nan") for i, f in enumerate(names)},
                "top_segment": str(counts.idxmax()) if n else "",
                "top_segment_share": float(counts.max() / n) if n else float("nan"),
                "tree_rule": " OR ".join(rules.get(cluster + 1, [])) or "no leaf of the depth-3 tree predicts this cluster",
                "k": k,
                "silhouette": scores[k],
                "silhouette_by_k": "; ".join(f"k={key}: {value:.3f}" for key, value in sorted(scores.items())),
                "tree_accuracy": accuracy,
                "tree_depth": TREE_DEPTH,
                "tree_text": tree_text,
                "sample_size": len(positions),
                "population": population,
                "seed": seed,
            }
        )
    return pd.DataFrame(rows, columns=list(EXPLORATION_COLUMNS))
