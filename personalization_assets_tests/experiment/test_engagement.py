"""Engagement after the send: the ESP export contract, and the honest simulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from personalization_assets.campaign.config import SimulationEffects, SimulationSettings
from personalization_assets.campaign.errors import DataContractError
from personalization_assets.campaign.sample_data import generate_customers
from personalization_assets.experiment.assignment import assign_arms, build_assignments
from personalization_assets.experiment.engagement import (
    ENGAGEMENT_COLUMNS,
    SOURCE_IMPORTED,
    SOURCE_SIMULATED,
    import_engagement,
    simulate_engagement,
)
from personalization_assets_tests.pure_fixtures import (
    campaign,
    catalog,
    customer_segments,
    measured_customers,
    variants_frame,
    verdicts_frame,
)

WAVE = "2026-01-05"
SENT = pd.DataFrame({"customer_id": [f"C{i}" for i in range(1, 7)]})


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def import_error(path: Path) -> DataContractError:
    with pytest.raises(DataContractError) as info:
        import_engagement(path, SENT, WAVE)
    assert str(path) in str(info.value)
    return info.value


# --- import ------------------------------------------------------------------------------------------


def test_valid_export(tmp_path):
    path = write(tmp_path / "e.csv", ["customer_id,opened,clicked,converted",
                                      "C1,1,1,1", "C2,1,0,0", "C3,0,0,0", "C4,1,1,0", "C5,0,0,0", "C6,1,0,0"])
    frame, missing = import_engagement(path, SENT, WAVE)
    assert missing == 0
    assert list(frame.columns) == list(ENGAGEMENT_COLUMNS)
    assert list(frame["customer_id"]) == list(SENT["customer_id"])
    assert frame["opened"].tolist() == [1, 1, 0, 1, 0, 1]
    assert frame["clicked"].tolist() == [1, 0, 0, 1, 0, 0]
    assert frame["converted"].tolist() == [1, 0, 0, 0, 0, 0]
    assert (frame["source"] == SOURCE_IMPORTED).all() and (frame["wave"] == WAVE).all()


def test_missing_customers_count_as_no_engagement_and_are_marked(tmp_path):
    path = write(tmp_path / "e.csv", ["customer_id,opened,clicked,converted", "C4,1,1,0", " C2 ,1,0,0", "C5,0,0,0"])
    frame, missing = import_engagement(path, SENT, WAVE, min_coverage=0.3)
    assert missing == 3
    assert frame.set_index("customer_id")["in_export"].to_dict() == {"C1": False, "C2": True, "C3": False, "C4": True,
                                                                      "C5": True, "C6": False}
    assert len(frame) == len(SENT)
    by_id = frame.set_index("customer_id")
    assert by_id.loc["C4", ["opened", "clicked", "converted"]].tolist() == [1, 1, 0]
    assert by_id.loc["C2", "opened"] == 1  # ids are trimmed
    for absent in ("C1", "C3", "C6"):
        assert by_id.loc[absent, ["opened", "clicked", "converted"]].tolist() == [0, 0, 0]


def test_extra_columns_in_the_export_are_ignored(tmp_path):
    path = write(tmp_path / "e.csv", ["campaign,customer_id,opened,clicked,converted,device", "x,C1,1,0,0,ios"])
    frame, missing = import_engagement(path, SENT, WAVE, min_coverage=0.0)
    assert missing == 5 and list(frame.columns) == list(ENGAGEMENT_COLUMNS)


@pytest.mark.parametrize(
    ("rows", "column", "rule", "line", "customer"),
    [
        (["C1,1,0,0", "C99,1,0,0"], "customer_id", f"must be a customer sent a message in wave {WAVE}", 3, "C99"),
        (["C1,1,0,0", "C2,0,0,0", "C1,1,1,0"], "customer_id", "must be unique", 4, "C1"),
        (["C1,1,0,0", "C2,2,0,0"], "opened", "must be 0 or 1", 3, "C2"),
        (["C1,1,0,0", "C2,1,yes,0"], "clicked", "must be 0 or 1", 3, "C2"),
        (["C1,1,0,", "C2,1,0,0"], "converted", "must be 0 or 1", 2, "C1"),
        (["C1,1,0,0", "C2,0,1,0"], "clicked", "a click requires an open", 3, "C2"),
        (["C1,1,0,0", "C3,1,0,1"], "converted", "a conversion requires a click", 3, "C3"),
        (["C1,1,0,0", ",1,0,0"], "customer_id", "must not be empty", 3, None),
    ],
    ids=["unknown-id", "duplicate-id", "value-2", "value-text", "value-empty", "click-no-open", "convert-no-click", "empty-id"],
)
def test_rule_violations(tmp_path, rows, column, rule, line, customer):
    path = write(tmp_path / "e.csv", ["customer_id,opened,clicked,converted", *rows])
    error = import_error(path)
    message = str(error)
    assert error.column == column and f"column '{column}'" in message
    assert rule in error.rule and rule in message
    assert line in error.examples.index
    if customer:
        assert error.examples.loc[line, "customer_id"] == customer
        assert customer in message


def test_missing_column(tmp_path):
    path = write(tmp_path / "e.csv", ["customer_id,opened,converted", "C1,1,0"])
    error = import_error(path)
    assert error.column == "clicked" and "column 'clicked'" in str(error)
    assert "required column missing" in str(error)


def test_empty_export(tmp_path):
    path = tmp_path / "e.csv"
    path.write_bytes(b"")
    error = import_error(path)
    assert "header row" in str(error)


def test_an_events_only_export_is_refused_unless_the_campaign_says_so(tmp_path):
    path = write(tmp_path / "e.csv", ["customer_id,opened,clicked,converted", "C4,1,1,0", "C2,1,0,0", "C1,1,0,0", "C3,1,0,0"])
    error = import_error(path)
    assert "an export of customers with events only?" in str(error) and "engagement.lists: customers_with_events" in str(error)
    frame, missing = import_engagement(path, SENT, WAVE, min_coverage=0.0)  # what engagement.lists: customers_with_events passes
    assert missing == 2


def test_a_header_only_export_is_refused(tmp_path):
    error = import_error(write(tmp_path / "e.csv", ["customer_id,opened,clicked,converted"]))
    assert "header and no rows" in str(error) and "e.csv" in str(error) and "earlier results are kept" in str(error)


def test_a_near_empty_export_is_refused_below_the_coverage_setting(tmp_path):
    path = write(tmp_path / "e.csv", ["customer_id,opened,clicked,converted", "C4,1,1,0", "C2,0,0,0"])
    error = import_error(path)
    assert "lists 2 of the 6 customers" in str(error) and "min_coverage 50%" in str(error)
    frame, missing = import_engagement(path, SENT, WAVE, min_coverage=0.0)  # explicitly accepted
    assert missing == 4 and frame["in_export"].sum() == 2


# --- simulation --------------------------------------------------------------------------------------


def sent_with_arms(n: int, weights: dict[str, float], seed: int = 7) -> pd.DataFrame:
    customers = customer_segments(n, seed)
    arms = np.asarray(assign_arms(customers["customer_id"], "sim-test", weights)).astype(object)
    return customers[["customer_id", "segment", "historical_open_rate", "historical_click_rate"]].assign(arm=arms)


SETTINGS = SimulationSettings(seed=5, conversion_given_click=0.12, effects=SimulationEffects(default={"friendly": 1.5}))


def test_simulation_is_deterministic_and_labelled():
    sent = sent_with_arms(5000, {"control": 0.5, "friendly": 0.5})
    first = simulate_engagement(sent, SETTINGS, WAVE)
    assert first.equals(simulate_engagement(sent.copy(), SETTINGS, WAVE))
    assert list(first.columns) == list(ENGAGEMENT_COLUMNS)
    assert (first["source"] == SOURCE_SIMULATED).all()
    assert (first["wave"] == WAVE).all()
    assert list(first["customer_id"]) == list(sent["customer_id"])
    # Outcomes are nested: a click needs an open, a conversion a click.
    assert (first["clicked"] <= first["opened"]).all() and (first["converted"] <= first["clicked"]).all()
    assert set(np.unique(first[["opened", "clicked", "converted"]])) <= {0, 1}
    # Another wave or seed draws again.
    other_wave = simulate_engagement(sent, SETTINGS, "2026-01-12")
    assert not other_wave["opened"].equals(first["opened"])


def test_simulation_does_not_depend_on_row_order():
    sent = sent_with_arms(5000, {"control": 0.5, "friendly": 0.5})
    original = simulate_engagement(sent, SETTINGS, WAVE).set_index("customer_id")
    shuffled = sent.sample(frac=1.0, random_state=4).reset_index(drop=True)
    again = simulate_engagement(shuffled, SETTINGS, WAVE).set_index("customer_id")
    assert again.loc[original.index].equals(original)
    # ... nor on which other customers were sent.
    half = simulate_engagement(sent.iloc[::2], SETTINGS, WAVE).set_index("customer_id")
    assert half.equals(original.loc[half.index])


def test_held_out_customers_are_absent():
    customers = customer_segments(5000)
    variants = variants_frame(catalog().ids)
    assignments = build_assignments(customers.assign(contact_hold=""), variants, verdicts_frame(variants, blocked={"at_risk:urgent", "vip_champions|control"}),
                                    experiment_id=campaign().experiment_id, weights=campaign().arm_weights, wave=WAVE)
    held = set(assignments.loc[~assignments["sent"], "customer_id"])
    assert held
    frame = simulate_engagement(measured_customers(assignments, customers), campaign().simulation, WAVE)
    assert not held & set(frame["customer_id"])
    assert set(frame["customer_id"]) == set(assignments.loc[assignments["sent"], "customer_id"])


def test_an_arm_with_effect_1_5_opens_clearly_more_than_control():
    sent = sent_with_arms(50_000, {"control": 0.5, "friendly": 0.5})
    frame = simulate_engagement(sent, SETTINGS, WAVE)
    rates = frame.assign(arm=sent["arm"].to_numpy()).groupby("arm")["opened"].mean()
    historical = sent.groupby("arm")["historical_open_rate"].mean()
    assert rates["friendly"] / rates["control"] > 1.35
    assert rates["friendly"] == pytest.approx(1.5 * historical["friendly"], abs=0.015)
    assert rates["control"] == pytest.approx(historical["control"], abs=0.01)


def test_segment_effect_overrides_the_default():
    settings = SimulationSettings(seed=1, effects=SimulationEffects(default={"friendly": 1.0},
                                                                   segments={"at_risk": {"friendly": 2.0}}))
    sent = sent_with_arms(30_000, {"friendly": 1.0})
    frame = simulate_engagement(sent, settings, WAVE).assign(segment=sent["segment"].to_numpy())
    base = sent.groupby("segment")["historical_open_rate"].mean()
    rates = frame.groupby("segment")["opened"].mean()
    assert rates["at_risk"] == pytest.approx(2.0 * base["at_risk"], rel=0.1)  # at-risk rates are low: no clipping
    assert rates["core_customers"] == pytest.approx(base["core_customers"], rel=0.06)


def test_rates_track_historical_rates():
    customers = generate_customers(100_000, seed=21)
    sent = customers[["customer_id", "historical_open_rate", "historical_click_rate"]].assign(segment="core_customers", arm="control")
    frame = simulate_engagement(sent, SimulationSettings(seed=9, conversion_given_click=0.1), WAVE)
    assert abs(frame["opened"].mean() - customers["historical_open_rate"].mean()) < 0.01
    assert abs(frame["clicked"].mean() - customers["historical_click_rate"].mean()) < 0.005
    assert frame["converted"].sum() / frame["clicked"].sum() == pytest.approx(0.1, abs=0.02)
    assert (frame["source"] == SOURCE_SIMULATED).all()


def test_zero_open_rate_never_opens():
    sent = pd.DataFrame({"customer_id": [f"Z{i}" for i in range(2000)], "segment": "s", "arm": "friendly",
                         "historical_open_rate": 0.0, "historical_click_rate": 0.0})
    frame = simulate_engagement(sent, SETTINGS, WAVE)
    assert frame[["opened", "clicked", "converted"]].to_numpy().sum() == 0


# --- revenue -----------------------------------------------------------------------------------------


def test_an_export_with_revenue_is_read_and_revenue_needs_a_conversion(tmp_path):
    path = write(tmp_path / "e.csv", ["customer_id,opened,clicked,converted,revenue",
                                      "C1,1,1,1,42.50", "C2,1,0,0,0", "C3,0,0,0,0", "C4,1,1,0,0", "C5,0,0,0,0"])
    frame, missing = import_engagement(path, SENT, WAVE)
    assert missing == 1
    assert frame["revenue"].tolist() == [42.5, 0.0, 0.0, 0.0, 0.0, 0.0]  # C6 is missing from the file: no revenue
    bad = write(tmp_path / "bad.csv", ["customer_id,opened,clicked,converted,revenue", "C1,1,1,0,19.99", *[f"C{i},0,0,0,0" for i in range(2, 7)]])
    error = import_error(bad)
    assert "revenue" in str(error) and "requires a conversion" in str(error) and "C1" in str(error)


def test_a_blank_revenue_of_a_customer_who_bought_nothing_is_no_revenue(tmp_path):
    path = write(tmp_path / "e.csv", ["customer_id,opened,clicked,converted,revenue", "C1,1,1,1,10", "C2,1,0,0,",
                                      *[f"C{i},0,0,0,0" for i in range(3, 7)]])
    assert import_engagement(path, SENT, WAVE)[0]["revenue"].tolist() == [10.0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("value", ["-5", "abc", "", "inf"])
def test_a_revenue_that_is_not_a_non_negative_number_is_refused(tmp_path, value):
    path = write(tmp_path / "e.csv", ["customer_id,opened,clicked,converted,revenue", f"C1,1,1,1,{value}",
                                      *[f"C{i},0,0,0,0" for i in range(2, 7)]])
    error = import_error(path)
    assert "revenue" in str(error) and "must be a number of at least 0" in str(error)


def test_an_export_without_revenue_is_refused_when_the_campaign_measures_it(tmp_path):
    path = write(tmp_path / "e.csv", ["customer_id,opened,clicked,converted", *[f"C{i},0,0,0" for i in range(1, 7)]])
    assert import_engagement(path, SENT, WAVE)[0]["revenue"].isna().all()  # not measured: left empty
    with pytest.raises(DataContractError, match="revenue.*required column missing.*revenue_per_recipient"):
        import_engagement(path, SENT, WAVE, require_revenue=True)


def test_simulated_revenue_is_the_order_value_of_each_conversion_with_the_expected_mean():
    from personalization_assets.experiment.engagement import expected_outcomes

    customers = customer_segments(40_000)
    sent = customers.assign(arm="control")
    settings = SimulationSettings(seed=3)
    frame = simulate_engagement(sent, settings, WAVE)
    assert (frame.loc[frame["converted"] == 0, "revenue"] == 0).all()
    assert (frame.loc[frame["converted"] == 1, "revenue"] > 0).all()
    expected = expected_outcomes(sent, settings, sent["arm"])["revenue"]
    # The simulated total is within 4 standard errors of the ground truth's expectation.
    spread = frame["revenue"].std() / np.sqrt(len(frame))
    assert abs(frame["revenue"].mean() - expected.mean()) < 4 * spread
