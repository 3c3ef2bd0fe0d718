"""The lift gate: the result that earns a rollout, overall and per segment.

One pure function used both by the `lift_threshold` asset check and by the rollout asset it guards,
so the rule holds whether or not the check ran in the same run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from personalization_assets.campaign.config import CONTROL_ARM
from personalization_assets.stats.srm import SrmResult

ROLLOUT_STATS = ("rel_lift", "rel_lift_ci_low", "rel_lift_ci_high", "p_value_adjusted")


@dataclass(frozen=True)
class LiftGate:
    passed: bool
    best_arm: str | None
    rel_lift: float
    p_value_adjusted: float
    mde: float
    n_per_arm: int
    minimum_lift: float
    alpha: float
    srm_p_value: float
    srm_flagged: bool
    failures: tuple[str, ...]
    engagement_p_value: float = math.nan  # engagement rows per arm against sent per arm

    def summary(self) -> str:
        if self.best_arm is None:
            return "no treatment arm has data: " + "; ".join(self.failures)
        head = f"best arm '{self.best_arm}': lift {self.rel_lift:+.1%}, adjusted p {self.p_value_adjusted:.4f}"
        return head + (": passed" if self.passed else ": " + "; ".join(self.failures))


def _gate_failures(row: pd.Series, minimum_lift: float, alpha: float) -> list[str]:
    """Why one arm's primary-metric result does not support a rollout (empty when it does)."""
    reason = row.get("unmeasurable_reason")
    if isinstance(reason, str) and reason:
        return [f"not measurable: {reason}"]
    failures = []
    n = int(row["n"])
    if pd.notna(row["mde"]) and row["mde"] > minimum_lift and not row["significant"]:
        failures.append(f"underpowered: MDE {row['mde']:.0%} > target {minimum_lift:.0%} at n={n} per arm")
    if pd.isna(row["rel_lift"]) or row["rel_lift"] < minimum_lift:
        lift = "n/a" if pd.isna(row["rel_lift"]) else f"{row['rel_lift']:+.1%}"
        failures.append(f"lift {lift} below target {minimum_lift:+.0%}")
    if not (pd.notna(row["p_value_adjusted"]) and row["p_value_adjusted"] < alpha):
        failures.append(f"not significant: adjusted p {row['p_value_adjusted']:.3g} >= alpha {alpha:g}")
    elif not row["rel_lift_ci_low"] > 0:
        # Fisher's exact test decides at small counts; the score interval must agree before a rollout.
        failures.append(f"interval includes no lift: [{row['rel_lift_ci_low']:+.1%}, {row['rel_lift_ci_high']:+.1%}]")
    return failures


def best_treatment(results: pd.DataFrame, scope: str, metric: str) -> pd.Series | None:
    rows = results[(results["scope"] == scope) & (results["metric"] == metric) & (results["arm"] != CONTROL_ARM)]
    rows = rows[rows["n"] > 0]
    if rows.empty:
        return None
    # A measurable arm first: a tiny arm's large lift must not hide a measured winner.
    unmeasurable = rows["unmeasurable_reason"].fillna("").astype(str).ne("") if "unmeasurable_reason" in rows else False
    ranked = rows.assign(_unmeasurable=unmeasurable)
    return ranked.sort_values(["_unmeasurable", "rel_lift", "arm"], ascending=[True, False, True], na_position="last").iloc[0].drop("_unmeasurable")


def evaluate_lift_gate(
    results: pd.DataFrame, *, primary_metric: str, minimum_lift: float, alpha: float, srm_p_value: float, srm_flagged: bool,
    engagement_mismatch: SrmResult | None = None,
) -> LiftGate:
    """Passes when the best tone's overall primary lift reaches the target, is significant after
    Holm adjustment with an interval above zero, the assignment shows no sample-ratio mismatch,
    and the engagement export lost no rows unevenly between arms."""
    best = best_treatment(results, "overall", primary_metric)
    srm_failure = [f"sample-ratio mismatch: p = {srm_p_value:.2g} < 0.001"] if srm_flagged else []
    if engagement_mismatch is not None and engagement_mismatch.flagged:
        listed = ", ".join(f"{arm} {engagement_mismatch.observed[arm]:,}" for arm in engagement_mismatch.observed)
        srm_failure.append(f"engagement rows missing unevenly between arms: p = {engagement_mismatch.p_value:.2g} < 0.001 "
                           f"(rows listed per arm: {listed})")
    engagement_p = math.nan if engagement_mismatch is None else engagement_mismatch.p_value
    if best is None:
        return LiftGate(False, None, float("nan"), float("nan"), float("nan"), 0, minimum_lift, alpha,
                        srm_p_value, srm_flagged, ("no sent customers in any treatment arm", *srm_failure), engagement_p)
    failures = [*_gate_failures(best, minimum_lift, alpha), *srm_failure]
    return LiftGate(
        passed=not failures,
        best_arm=str(best["arm"]),
        rel_lift=float(best["rel_lift"]),
        p_value_adjusted=float(best["p_value_adjusted"]),
        mde=float(best["mde"]),
        n_per_arm=int(best["n"]),
        minimum_lift=minimum_lift,
        alpha=alpha,
        srm_p_value=srm_p_value,
        srm_flagged=srm_flagged,
        failures=tuple(failures),
        engagement_p_value=engagement_p,
    )


def rollout_recommendations(
    results: pd.DataFrame, *, scopes: list[str], primary_metric: str, minimum_lift: float, alpha: float
) -> pd.DataFrame:
    """Per scope (overall and each segment): the tone to roll out, only where the data supports it."""
    rows = []
    for scope in scopes:
        best = best_treatment(results, scope, primary_metric)
        failures = ["no sent customers in any treatment arm"] if best is None else _gate_failures(best, minimum_lift, alpha)
        winner = None if failures else str(best["arm"])
        rows.append(
            {
                "scope": scope,
                "recommended_arm": winner or CONTROL_ARM,
                "has_reliable_winner": winner is not None,
                "best_arm": None if best is None else str(best["arm"]),
                **{key: float("nan") if best is None else float(best[key]) for key in ROLLOUT_STATS},
                "reason": "supported by the data" if winner else "no reliable winner: " + "; ".join(failures),
            }
        )
    return pd.DataFrame(rows)
