"""`cpo plan`: how many customers a campaign needs before it is run, and what it can detect.

The plan uses the same design as the analysis: the campaign's arms and weights, its alpha spread
over every treatment x metric comparison of a results table (Bonferroni, conservative for the
Holm-adjusted analysis), its minimum lift, and the primary metric's base rate, estimated from the
customers' historical rates unless given.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from personalization_assets.campaign.config import (
    CONTINUOUS_METRICS,
    CONTROL_ARM,
    CampaignConfig,
)
from personalization_assets.campaign.errors import ConfigError
from personalization_assets.stats import PowerPlan, minimum_detectable_lift, plan

# The historical rate that estimates each metric's control rate (per send).
BASE_RATE_COLUMNS = {"open_rate": "historical_open_rate", "click_rate": "historical_click_rate"}


@dataclass(frozen=True)
class CampaignPlan:
    metric: str
    base_rate: float
    power: float
    requirement: PowerPlan
    scopes: pd.DataFrame  # scope, customers, control_n, smallest_treatment_n, mde, enough
    sd: float | None = None  # a continuous metric's standard deviation per customer

    def lines(self) -> list[str]:
        r = self.requirement
        base = (f"mean {self.base_rate:,.2f} per recipient (standard deviation {self.sd:,.2f})" if self.sd is not None
                else f"base rate {self.base_rate:.1%}")
        return [
            f"primary metric {self.metric}, {base}, minimum lift {r.min_relative_lift:+.0%}, "
            f"power {self.power:.0%}, alpha {r.alpha:g} over {r.n_comparisons} comparisons ({r.alpha_per_comparison:.4f} each)",
            f"customers needed per analysed scope: {r.total_customers:,} "
            f"({', '.join(f'{n:,}' for n in r.customers_per_arm)} per arm, control first)",
        ]


def base_rate_for(config: CampaignConfig, customers: pd.DataFrame) -> float:
    column = BASE_RATE_COLUMNS.get(config.metrics.primary)
    if column is None:
        extra = " and --sd (its standard deviation per customer)" if config.metrics.primary in CONTINUOUS_METRICS else ""
        raise ConfigError(config.path, f"metrics.primary: no historical column estimates {config.metrics.primary}; pass "
                                       f"--base-rate{extra}, e.g. from an earlier wave's results (its control row's rate"
                                       f"{' and outcome_sd' if extra else ''})")
    return float(customers[column].mean())


def plan_campaign(
    config: CampaignConfig,
    customers_per_scope: pd.Series,
    *,
    base_rate: float,
    power: float = 0.8,
    min_lift: float | None = None,
    sd: float | None = None,
) -> CampaignPlan:
    """Requirement for the campaign, and the MDE each scope (overall, each segment) will have.
    A continuous primary metric (revenue per recipient) needs `sd`, its standard deviation per
    customer; `base_rate` is then its control mean."""
    continuous = config.metrics.primary in CONTINUOUS_METRICS
    if continuous and sd is not None and not (base_rate > 0 and sd > 0):
        raise ConfigError(config.path, f"metrics.primary: {config.metrics.primary} needs a positive mean (--base-rate) and "
                                       f"standard deviation (--sd); got {base_rate:g} and {sd:g}")
    if continuous != (sd is not None):
        raise ConfigError(config.path, f"metrics.primary: {config.metrics.primary} " + (
            "is an amount: pass --sd, its standard deviation per customer (an earlier wave's control outcome_sd)" if continuous
            else "is a rate: --sd is for an amount (revenue_per_recipient)"))
    weights = [config.arm_weights[a] for a in config.arm_names]
    n_treatments = len(weights) - 1
    requirement = plan(
        base_rate,
        config.minimum_lift if min_lift is None else min_lift,
        n_arms=len(weights),
        weights=weights,
        alpha=config.alpha,
        power=power,
        n_comparisons=n_treatments * len(config.metrics.all),
        sd=sd,
    )
    control_share = config.arm_weights[CONTROL_ARM]
    smallest_share = min(w for arm, w in config.arm_weights.items() if arm != CONTROL_ARM)
    sizes = customers_per_scope.astype(int)
    control_n = (sizes * control_share).round().astype(int)
    treatment_n = (sizes * smallest_share).round().astype(int)
    mde = minimum_detectable_lift(
        base_rate, control_n.to_numpy(), treatment_n.to_numpy(), alpha=requirement.alpha_per_comparison, power=power, sd=sd
    )
    scopes = pd.DataFrame(
        {
            "scope": sizes.index,
            "customers": sizes.to_numpy(),
            "control_n": control_n.to_numpy(),
            "smallest_treatment_n": treatment_n.to_numpy(),
            "mde": mde,
            "enough": sizes.to_numpy() >= requirement.total_customers,
        }
    )
    return CampaignPlan(config.metrics.primary, base_rate, power, requirement, scopes, sd)
