"""The lift gate: the result that earns a rollout, overall and per segment.

One pure function used both by the `lift_threshold` asset check and by the rollout asset it guards,
so the rule holds whether or not the check ran in the same run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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


def guardrail_verdict(lower: float, upper: float, margin: float) -> str:
    """One guardrail comparison, from the one-sided (1 - alpha) bounds of the arm's rate minus
    control's: `holds` (the rise is shown below the margin), `fails` (the rise is significant,
    its lower bound above 0, and not shown below the margin), else `unproven` (no significant
    rise, but too few events to show it is below the margin)."""
    if upper < margin:
        return "holds"
    return "fails" if lower > 0 else "unproven"


def guardrail_failures(results: pd.DataFrame, arm: str) -> list[str]:
    """The guardrails (unsubscribe, complaint rates) an arm fails: it significantly raises the rate
    and the rise is not shown below the margin. Judged on the whole test (the overall scope), where
    a guardrail has the most events, and applied to every scope: such a tone wins nowhere."""
    if "guardrail_margin" not in results:
        return []
    rows = results[(results["scope"] == "overall") & (results["arm"] == arm) & results["guardrail_margin"].notna()]
    return [f"{row.metric} significantly raised ({row.rate:.2%} vs {row.control_rate:.2%} in control), not shown within "
            f"+{row.guardrail_margin * 100:.2f} pts (upper bound {row.guardrail_upper * 100:+.2f} pts)"
            for row in rows.itertuples() if guardrail_verdict(row.guardrail_lower, row.guardrail_upper, row.guardrail_margin) == "fails"]


def guardrail_blocked_arms(results: pd.DataFrame) -> list[str]:
    """The arms that fail a guardrail: no policy may send them."""
    arms = results.loc[results["arm"] != CONTROL_ARM, "arm"].drop_duplicates()
    return [str(arm) for arm in arms if guardrail_failures(results, str(arm))]


def _gate_failures(row: pd.Series, minimum_lift: float, alpha: float, guardrails: Sequence[str] = ()) -> list[str]:
    """Why one arm's primary-metric result does not support a rollout (empty when it does);
    `guardrails` are the guardrails it fails (`guardrail_failures`, judged on the whole test)."""
    reason = row.get("unmeasurable_reason")
    if isinstance(reason, str) and reason:
        return [f"not measurable: {reason}"]
    failures = [f"guardrail: {failure}" for failure in guardrails]
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
    # A measurable arm first: a tiny arm's large lift must not hide a measured winner; and an arm
    # that holds its guardrails before one that does not, which can never win.
    unmeasurable = rows["unmeasurable_reason"].fillna("").astype(str).ne("") if "unmeasurable_reason" in rows else False
    blocked = rows["arm"].isin(guardrail_blocked_arms(results))
    ranked = rows.assign(_unmeasurable=unmeasurable, _blocked=blocked)
    best = ranked.sort_values(["_unmeasurable", "_blocked", "rel_lift", "arm"], ascending=[True, True, False, True], na_position="last")
    return best.iloc[0].drop(["_unmeasurable", "_blocked"])


def evaluate_lift_gate(
    results: pd.DataFrame, *, primary_metric: str, minimum_lift: float, alpha: float, srm_p_value: float, srm_flagged: bool,
    engagement_mismatch: SrmResult | None = None,
) -> LiftGate:
    """Passes when the best tone's overall primary lift reaches the target, is significant after
    Holm adjustment with an interval above zero, the tone holds its guardrails (unsubscribe and
    complaint rates within their margins of control), the assignment shows no sample-ratio
    mismatch, and the engagement export lost no rows unevenly between arms."""
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
    failures = [*_gate_failures(best, minimum_lift, alpha, guardrail_failures(results, str(best["arm"]))), *srm_failure]
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
        failures = (["no sent customers in any treatment arm"] if best is None
                    else _gate_failures(best, minimum_lift, alpha, guardrail_failures(results, str(best["arm"]))))
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
