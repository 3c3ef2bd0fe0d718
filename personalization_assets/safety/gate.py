"""The safety gate: below the campaign's pass rate, nobody is assigned or sent anything.

One pure function used both by the blocking `safety_pass_rate` asset check and by the
`assignments` asset it guards, so the rule holds whether or not the check ran in the same run.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class SafetyGate:
    passed: bool
    pass_rate: float
    threshold: float
    n_variants: int
    n_blocked: int
    blocked_variants: tuple[str, ...]

    def blocked_lines(self, verdicts: pd.DataFrame) -> list[str]:
        """Each blocked variant with each segment's reasons: what to fix before the gate can pass."""
        blocked = verdicts[verdicts["variant_id"].astype(str).isin(self.blocked_variants) & verdicts["decision"].ne("approved")]
        return [f"{row.variant_id} ({row.segment}): {row.reasons or 'blocked'}"
                for row in blocked.sort_values(["variant_id", "segment"]).itertuples()]

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"safety pass rate {self.pass_rate:.1%} ({self.n_variants - self.n_blocked}/{self.n_variants} variants approved), "
            f"threshold {self.threshold:.0%}: {verdict}"
        )


def evaluate_safety_gate(verdicts: pd.DataFrame, threshold: float) -> SafetyGate:
    """Share of distinct variants approved; the shared control message counts once, and counts as
    approved only if every segment's screening of it approved it (fail closed)."""
    approved_everywhere = verdicts["decision"].eq("approved").groupby(verdicts["variant_id"].astype(str)).all()
    n_variants = len(approved_everywhere)
    approved = int(approved_everywhere.sum())
    blocked = tuple(sorted(approved_everywhere.index[~approved_everywhere.to_numpy()]))
    pass_rate = approved / n_variants if n_variants else 0.0
    return SafetyGate(
        passed=n_variants > 0 and pass_rate >= threshold,
        pass_rate=pass_rate,
        threshold=threshold,
        n_variants=n_variants,
        n_blocked=len(blocked),
        blocked_variants=blocked,
    )
