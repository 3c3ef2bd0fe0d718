"""The report's verdict per scope (overall, each segment): which tone, if any, wins, and why not
otherwise. Pure logic: no Dagster import."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from personalization_assets.experiment.results import OVERALL, campaign_rollout
from personalization_assets.report.model import ReportInputs


@dataclass(frozen=True)
class Verdict:
    scope: str
    sent: int
    winner: str | None
    best_arm: str | None
    row: pd.Series | None  # the best arm's primary-metric row of experiment_results
    reason: str


def scope_verdicts(inputs: ReportInputs, scopes: Sequence[str]) -> list[Verdict]:
    """The winner per scope, under the same rule as the rollout_recommendation asset: a scope has
    a winner only when its own best tone passes the gate and the campaign's overall lift gate
    (which includes SRM) passes; a segment's result is otherwise reported as a lead to confirm."""
    config, results = inputs.config, inputs.results
    gate, own = campaign_rollout(results, inputs.assignments, config, list(scopes), inputs.allocation)
    own = own.set_index("scope")
    primary = results[(results["metric"] == config.metrics.primary)]
    verdicts = []
    for scope in scopes:
        rows = primary[primary["scope"] == scope]
        sent = int(rows["n"].sum())
        mine = own.loc[scope]
        best = mine["best_arm"] if isinstance(mine["best_arm"], str) else None
        row = rows[rows["arm"] == best].iloc[0] if best is not None else None
        if scope == OVERALL:
            winner = gate.best_arm if gate.passed else None
            reason = "supported by the data" if gate.passed else "; ".join(gate.failures)
        elif not mine["has_reliable_winner"]:
            winner, reason = None, str(mine["reason"]).removeprefix("no reliable winner: ")
        elif not gate.passed:
            winner = None
            reason = ("this segment's own result passes, but the campaign's overall lift gate does not, "
                      "so no tone is rolled out anywhere; a lead to confirm in the next wave")
        else:
            winner, reason = best, "supported by the data"
        verdicts.append(Verdict(scope, sent, winner, best, row, reason))
    return verdicts
