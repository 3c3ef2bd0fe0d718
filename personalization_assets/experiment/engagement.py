"""Engagement after the send: an imported ESP export, validated, or an honest simulation.

Import rules (per wave, `customer_id,opened,clicked,converted`, values 0/1; optionally the guardrail
columns `unsubscribed` and `complained`, 0/1, and `revenue`, the customer's order value in the
wave (a number ≥ 0, positive only with a conversion), each left empty in the table when the export
lacks it; a campaign whose metrics include revenue_per_recipient requires `revenue`):
- unknown customer ids (not sent a message this wave), duplicate ids, values other than 0/1, a
  click without an open and a conversion without a click are errors naming the rows;
- the export lists one row per sent customer, 0s included. A file with no rows, or with fewer
  than `engagement.min_coverage` of the wave's sent customers, is refused: a truncated export
  must not overwrite a wave's results. A sent customer missing from an accepted file counts as
  no engagement (0, 0, 0) and has `in_export` False: the results compare, per arm, how many sent
  customers the export lists, so rows lost unevenly between arms are flagged instead of read as
  non-openers (`experiment/results.engagement_mismatch`).

Simulation (no file for the wave): each sent customer's outcomes are drawn from their own
historical rates times the ground-truth effect of the message they were actually sent (arm x
segment, from the campaign config); a conversion's revenue is the customer's average order value
times a lognormal draw of mean 1 (`simulation.order_value_spread`). Draws come from a salted hash
of the customer id, so they do not depend on row order. Every simulated row says so in its
`source` column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtri

from personalization_assets.campaign.config import (
    GUARDRAIL_COLUMNS,
    NO_EMAIL_ARM,
    REVENUE_METRIC,
    CampaignConfig,
    SimulationSettings,
)
from personalization_assets.campaign.errors import (
    DataContractError,
    offending_rows,
    read_csv_as_text,
)
from personalization_assets.experiment.assignment import assign_arms, unit_intervals

OUTCOMES = ("opened", "clicked", "converted")
# Optional columns of the export (0/1; empty where the export does not have them): the guardrails.
GUARDRAIL_OUTCOMES = tuple(GUARDRAIL_COLUMNS.values())
REVENUE = "revenue"
ENGAGEMENT_COLUMNS = ("wave", "customer_id", *OUTCOMES, *GUARDRAIL_OUTCOMES, REVENUE, "in_export", "source")
# The columns the analysis reads of an engagement table.
ANALYSED_COLUMNS = ENGAGEMENT_COLUMNS[1:]
SOURCE_IMPORTED = "imported"
SOURCE_SIMULATED = "simulated"


def import_engagement(path: Path, sent: pd.DataFrame, wave: str, min_coverage: float = 0.5,
                      conversions: str = "email_clicks", require_revenue: bool = False) -> tuple[pd.DataFrame, int]:
    """Validate an ESP export against this wave's sends (`sent`: the measured customers, the
    no-email holdout's included, with their `arm`); returns the engagement and how many of them
    were missing from the file (counted as no engagement, `in_export` False). With `conversions`
    `any_channel` a conversion needs no click; a no-email customer can never open or click.
    `require_revenue`: the campaign measures revenue per recipient, so the file must have `revenue`."""
    raw = read_csv_as_text(path)
    missing_columns = [c for c in ("customer_id", *OUTCOMES) if c not in raw.columns]
    if missing_columns:
        raise DataContractError(path, missing_columns[0], f"required column missing (found: {list(raw.columns)})")
    if require_revenue and REVENUE not in raw.columns:
        raise DataContractError(path, REVENUE, f"required column missing: the campaign's metrics include {REVENUE_METRIC} "
                                f"(found: {list(raw.columns)})")
    if raw.empty and len(sent):
        raise DataContractError(path, "customer_id", f"the file has a header and no rows; wave {wave} sent {len(sent):,} customers "
                                "(the wave's earlier results are kept)")
    raw["customer_id"] = raw["customer_id"].astype("string").str.strip()
    no_email = (sent["arm"].astype(str) == NO_EMAIL_ARM).to_numpy() if "arm" in sent else np.zeros(len(sent), dtype=bool)

    def reject(mask: pd.Series, column: str, rule: str) -> None:
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            shown = list(dict.fromkeys(["customer_id", *OUTCOMES, column]))
            raise DataContractError(path, column, rule, offending_rows(raw, mask, shown), int(mask.sum()))

    reject(raw["customer_id"].isna() | (raw["customer_id"] == ""), "customer_id", "must not be empty")
    reject(raw["customer_id"].duplicated(keep=False), "customer_id", "must be unique")
    reject(~raw["customer_id"].isin(sent["customer_id"]), "customer_id",
           f"must be a customer sent a message in wave {wave}" + (" or in its no-email holdout" if no_email.any() else ""))
    for column in OUTCOMES:
        reject(~raw[column].isin(["0", "1"]), column, "must be 0 or 1")
        raw[column] = raw[column].astype(np.int8)
    guardrails = [column for column in GUARDRAIL_OUTCOMES if column in raw.columns]
    for column in guardrails:
        reject(~raw[column].isin(["0", "1"]), column, "must be 0 or 1 (an optional guardrail column: leave it out if not exported)")
        raw[column] = raw[column].astype(np.float64)
    revenue = [REVENUE] if REVENUE in raw.columns else []
    if revenue:
        text = raw[REVENUE].fillna("").str.strip()
        # A blank cell of a customer who bought nothing is no revenue; elsewhere a blank is refused.
        amounts = pd.to_numeric(text.mask((text == "") & (raw["converted"] == 0), "0"), errors="coerce")
        reject(~np.isfinite(amounts.to_numpy(dtype=float, na_value=np.nan)) | (amounts < 0), REVENUE,
               "must be a number of at least 0 (0 for a customer who bought nothing)")
        raw[REVENUE] = amounts.astype(np.float64)
        reject((raw[REVENUE] > 0) & (raw["converted"] == 0), REVENUE, "revenue requires a conversion (converted = 1)")
    reject((raw["clicked"] == 1) & (raw["opened"] == 0), "clicked", "a click requires an open (opened = 1)")
    if conversions == "email_clicks":
        reject((raw["converted"] == 1) & (raw["clicked"] == 0), "converted", "a conversion requires a click (clicked = 1; "
               "set engagement.conversions: any_channel if the export counts conversions by any channel)")
    holdout = raw["customer_id"].isin(sent.loc[no_email, "customer_id"])
    reject(holdout & (raw["opened"] == 1), "opened", f"a customer of the {NO_EMAIL_ARM} holdout was sent no email to open")

    if min_coverage > 0 and len(raw) < len(sent) and not (raw[list(OUTCOMES)] == 0).all(axis=1).any():
        raise DataContractError(path, "opened", f"every row of the file has an event and it lists {len(raw):,} of the {len(sent):,} "
                                f"customers wave {wave} sent: an export of customers with events only? Set engagement.lists: "
                                "customers_with_events for such exports (lost rows can then not be detected)")
    if len(sent) and len(raw) < min_coverage * len(sent):
        raise DataContractError(path, "customer_id", f"the file lists {len(raw):,} of the {len(sent):,} customers wave {wave} sent "
                                f"({len(raw) / len(sent):.1%}), below engagement.min_coverage {min_coverage:.0%}: a truncated "
                                "export? (the wave's earlier results are kept; lower min_coverage to accept it)")
    frame = sent[["customer_id"]].merge(raw[["customer_id", *OUTCOMES, *guardrails, *revenue]], on="customer_id", how="left")
    in_export = frame["opened"].notna().to_numpy()
    frame[list(OUTCOMES)] = frame[list(OUTCOMES)].fillna(0).astype(np.int8)
    for column in (*GUARDRAIL_OUTCOMES, REVENUE):  # a listed column: 0 for a sent customer missing from the file; else not measured
        frame[column] = frame[column].fillna(0.0) if column in (*guardrails, *revenue) else np.nan
    return _finish(frame.assign(in_export=in_export), wave, SOURCE_IMPORTED), int((~in_export).sum())


def simulate_engagement(sent: pd.DataFrame, settings: SimulationSettings, wave: str, *, salt: str = "") -> pd.DataFrame:
    """Outcomes for the sent customers (columns customer_id, segment, arm, historical rates, and
    the columns the heterogeneous effects read). `salt` tells apart draws of different sends of
    the same wave (the rollout's from the test's)."""
    p_open, p_click_given_open, p_convert_given_click = outcome_probabilities(sent, settings, sent["arm"])
    ids = sent["customer_id"].to_numpy()
    salt = f"simulation:{settings.seed}:{wave}{salt}"
    # One draw per outcome, each from its own salted hash of the id (the ids are encoded once).
    open_draw, click_draw, convert_draw, unsubscribe_draw, complaint_draw, order_draw = unit_intervals(
        ids, [salt + ":open", salt + ":click", salt + ":convert", salt + ":unsubscribe", salt + ":complain", salt + ":order"])
    opened = open_draw < p_open
    clicked = opened & (click_draw < p_click_given_open)
    converted = clicked & (convert_draw < p_convert_given_click)
    if settings.organic_conversion_rate > 0:  # conversions by any channel, emailed or not (`organic_draw` of its own salt)
        (organic_draw,) = unit_intervals(ids, [salt + ":organic"])
        converted |= organic_draw < settings.organic_conversion_rate
    p_unsubscribe, p_complain = guardrail_probabilities(sent, settings, sent["arm"])
    frame = pd.DataFrame(
        {"customer_id": ids, "opened": opened.astype(np.int8), "clicked": clicked.astype(np.int8), "converted": converted.astype(np.int8),
         "unsubscribed": (unsubscribe_draw < p_unsubscribe).astype(np.float64), "complained": (complaint_draw < p_complain).astype(np.float64),
         # Revenue needs each customer's average order value (the wave's customers always have it).
         REVENUE: np.where(converted, order_values(sent, settings, order_draw), 0.0) if "avg_order_value" in sent else np.nan,
         "in_export": True}
    )
    return _finish(frame, wave, SOURCE_SIMULATED)


def outcome_probabilities(customers: pd.DataFrame, settings: SimulationSettings, arms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The simulator's ground truth for each customer sent `arms` (one arm name per row): the
    probabilities of an open, of a click given an open and of a conversion given a click."""
    effect = customer_effects(customers, settings, arms)
    # A no-email customer gets nothing to open, click or unsubscribe from.
    effect = np.where(np.asarray(arms, dtype=object) == NO_EMAIL_ARM, 0.0, effect)
    open_rate = customers["historical_open_rate"].to_numpy(dtype=float)
    click_rate = customers["historical_click_rate"].to_numpy(dtype=float)
    click_given_open = np.divide(click_rate, open_rate, out=np.zeros_like(click_rate), where=open_rate > 0)
    return (np.clip(open_rate * effect, 0, 1), np.clip(click_given_open * effect, 0, 1),
            np.clip(settings.conversion_given_click * effect, 0, 1))


def order_values(customers: pd.DataFrame, settings: SimulationSettings, draw: np.ndarray) -> np.ndarray:
    """The revenue of each customer's order, from a uniform `draw` per customer: their average
    order value times a lognormal of mean 1 and log-scale spread `order_value_spread`."""
    spread = settings.order_value_spread
    with np.errstate(divide="ignore"):  # a draw of exactly 0 is an order of value 0 (none at spread 0: 0 · -inf)
        factor = np.exp(spread * ndtri(draw) - spread**2 / 2) if spread > 0 else 1.0
    return customers["avg_order_value"].to_numpy(dtype=float) * factor


def guardrail_probabilities(customers: pd.DataFrame, settings: SimulationSettings, arms) -> tuple[np.ndarray, np.ndarray]:
    """The simulator's chance that each customer sent `arms` unsubscribes, and complains."""
    codes, names = pd.factorize(pd.Series(np.asarray(arms, dtype=object)), use_na_sentinel=False)
    table = np.array([0.0 if arm == NO_EMAIL_ARM else settings.guardrail_effects.get(str(arm), 1.0) for arm in names], dtype=float)
    multiplier = table[codes] if len(codes) else np.zeros(0)
    return np.clip(settings.unsubscribe_rate * multiplier, 0, 1), np.clip(settings.complaint_rate * multiplier, 0, 1)


def expected_outcomes(customers: pd.DataFrame, settings: SimulationSettings, arms) -> dict[str, np.ndarray]:
    """Each customer's true probability of opening, clicking and converting when sent `arms`, and
    their expected revenue: what a policy's true value is computed from (no draws)."""
    p_open, p_click, p_convert = outcome_probabilities(customers, settings, arms)
    p_unsubscribe, p_complain = guardrail_probabilities(customers, settings, arms)
    via_email, organic = p_open * p_click * p_convert, settings.organic_conversion_rate
    p_converted = via_email + organic - via_email * organic
    return {"opened": p_open, "clicked": p_open * p_click, "converted": p_converted,
            "unsubscribed": p_unsubscribe, "complained": p_complain,
            REVENUE: p_converted * (customers["avg_order_value"].to_numpy(dtype=float) if "avg_order_value" in customers else np.nan)}


def customer_effects(customers: pd.DataFrame, settings: SimulationSettings, arms) -> np.ndarray:
    """Ground-truth multiplier per customer: the (segment, arm) effect, looked up per pair, not
    per row, times each heterogeneous effect whose condition the customer meets."""
    segment_codes, segments = pd.factorize(customers["segment"], use_na_sentinel=False)
    arm_codes, arm_names = pd.factorize(pd.Series(np.asarray(arms, dtype=object)), use_na_sentinel=False)
    table = np.array([[settings.effect(str(segment), str(arm)) for arm in arm_names] for segment in segments], dtype=float)
    effect = table.reshape(len(segments), len(arm_names))[segment_codes, arm_codes]
    for rule in settings.heterogeneity:
        multiplier = np.array([rule.effects.get(str(arm), 1.0) for arm in arm_names], dtype=float)[arm_codes]
        applies = condition_mask(customers, rule.when)
        if rule.segment is not None:
            applies &= customers["segment"].astype(str).to_numpy() == rule.segment
        effect = np.where(applies, effect * multiplier, effect)
    return effect


def condition_mask(customers: pd.DataFrame, condition) -> np.ndarray:
    """Which customers meet a `CustomerCondition` (one column against one bound)."""
    if condition.column not in customers.columns:
        raise ValueError(f"simulation.heterogeneity reads customer column {condition.column!r}, which the simulator was not given")
    values = customers[condition.column]
    if condition.equals is not None:
        return values.astype(str).to_numpy() == condition.equals
    numbers = values.to_numpy(dtype=float)
    return numbers < condition.below if condition.below is not None else numbers >= condition.at_least


def engagement_source(engagement: pd.DataFrame) -> str:
    """Where a wave's engagement came from (SOURCE_IMPORTED or SOURCE_SIMULATED); an empty table
    (nobody was sent anything) counts as simulated."""
    return str(engagement["source"].iloc[0]) if len(engagement) else SOURCE_SIMULATED


def _finish(frame: pd.DataFrame, wave: str, source: str) -> pd.DataFrame:
    frame = frame.assign(wave=wave, source=source)
    return frame[list(ENGAGEMENT_COLUMNS)].reset_index(drop=True)


def simulated_test(customers: pd.DataFrame, config: CampaignConfig, wave: str) -> pd.DataFrame:
    """A SIMULATED randomized test on `customers` (with their `segment`): each assigned an arm by
    the campaign's hash and weights, and sent it, with outcomes from the simulator. What the policy
    simulations (tests, benchmarks/personalization.py) run the estimators on."""
    frame = customers.assign(arm=np.asarray(assign_arms(customers["customer_id"], config.experiment_id, config.arm_weights), dtype=object))
    outcomes = simulate_engagement(frame, config.simulation, wave)
    return frame.assign(**{column: outcomes[column].to_numpy() for column in (*OUTCOMES, *GUARDRAIL_OUTCOMES, REVENUE)}, in_export=True)
