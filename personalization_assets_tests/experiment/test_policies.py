"""The uplift model, the doubly robust policy values and their gate: unit tests, and simulations
against the simulator's ground truth (coverage of the true value, the gate's false-pass rate
without heterogeneity, its power with it). All engagement here is SIMULATED."""

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from personalization_assets.campaign.config import CONTROL_ARM, CampaignConfig
from personalization_assets.campaign.errors import ConfigError
from personalization_assets.experiment.engagement import (
    customer_effects,
    expected_outcomes,
    simulated_test,
)
from personalization_assets.experiment.policies import (
    BEST_SINGLE_TONE,
    CONTROL_FOR_ALL,
    PERSONALIZED,
    POLICIES,
    RandomizedTest,
    design_propensities,
    evaluate_policies,
    personalized_gate_passes,
    qini_coefficient,
    qini_curve,
    split_of,
)
from personalization_assets.experiment.uplift import (
    choice_drivers,
    fit_t_learner,
    uplift_features,
)
from personalization_assets_tests.pure_fixtures import campaign, catalog

# Young customers respond to the friendly tone and not to the urgent one; older ones to the
# informational tone: effects that vary inside every segment, which a per-segment tone cannot follow.
HETEROGENEITY = [
    {"when": {"column": "age", "below": 35}, "effects": {"friendly": 1.35, "urgent": 0.85}},
    {"when": {"column": "age", "at_least": 55}, "effects": {"informational": 1.35, "friendly": 0.85}},
]


def config_with(heterogeneity=(), experiment_id="policy-sim", **simulation) -> CampaignConfig:
    raw = campaign().model_dump()
    raw["experiment_id"] = experiment_id
    raw["simulation"]["heterogeneity"] = list(heterogeneity)
    raw["simulation"].update(simulation)
    return CampaignConfig.model_validate(raw)


@lru_cache(maxsize=1)
def population() -> pd.DataFrame:
    """40,000 generated customers with their segments: the simulations draw their tests from them."""
    from personalization_assets.audience.segmentation import assign_segments
    from personalization_assets.campaign.sample_data import generate_customers

    customers = generate_customers(40_000, seed=11)
    return customers.assign(segment=np.asarray(assign_segments(customers, catalog()), dtype=object))


def simulated(config: CampaignConfig, n: int, replicate: int) -> pd.DataFrame:
    customers = population().sample(n, random_state=replicate).reset_index(drop=True)
    return simulated_test(customers, config.model_copy(update={"experiment_id": f"sim-{replicate}"}), f"w{replicate}")


def best_rate_rule(train: pd.DataFrame) -> dict[str, str]:
    """A cheap segment-winner rule for the simulations: each segment's best raw rate."""
    rates = train.groupby(["segment", "arm"])["opened"].mean().unstack()
    return {segment: str(rates.loc[segment].idxmax()) for segment in rates.index}


def evaluate(frame: pd.DataFrame, config: CampaignConfig, seed: int = 0, estimator: str = "logistic", folds: int = 5,
             outcome: str = "opened"):
    data = RandomizedTest(frame, outcome, tuple(config.arm_names), tuple(catalog().ids),
                          design_propensities(frame, catalog().ids, config.arm_weights), continuous=outcome == "revenue")
    return evaluate_policies(data, winner_rule=best_rate_rule, estimator=estimator, folds=folds, seed=seed, alpha=0.05)


def true_values(frame: pd.DataFrame, config: CampaignConfig, evaluation, outcome: str = "opened") -> dict[str, float]:
    customers = frame.set_index("customer_id").loc[evaluation.choices["customer_id"]].reset_index()
    return {policy: float(expected_outcomes(customers, config.simulation, evaluation.choices[policy].to_numpy())[outcome].mean())
            for policy in POLICIES}


# --- the simulator's heterogeneous effects ----------------------------------------------------


def test_heterogeneous_effects_multiply_the_segment_effect_only_where_the_condition_holds():
    config = config_with(HETEROGENEITY)
    customers = pd.DataFrame({"segment": ["core_customers"] * 3, "age": [25, 45, 60], "tier": "Gold"})
    friendly = customer_effects(customers, config.simulation, ["friendly"] * 3)
    base = config.simulation.effect("core_customers", "friendly")
    np.testing.assert_allclose(friendly, [base * 1.35, base, base * 0.85])
    control = customer_effects(customers, config.simulation, [CONTROL_ARM] * 3)
    np.testing.assert_allclose(control, [1.0, 1.0, 1.0])


def test_a_heterogeneous_effect_can_be_confined_to_a_segment_and_to_a_tier():
    config = config_with([{"when": {"column": "tier", "equals": "Gold"}, "segment": "at_risk", "effects": {"urgent": 2.0}}])
    customers = pd.DataFrame({"segment": ["at_risk", "at_risk", "core_customers"], "tier": ["Gold", "Silver", "Gold"], "age": 40})
    effect = customer_effects(customers, config.simulation, ["urgent"] * 3)
    assert effect[0] == pytest.approx(2 * config.simulation.effect("at_risk", "urgent"))
    assert effect[1] == pytest.approx(config.simulation.effect("at_risk", "urgent"))
    assert effect[2] == pytest.approx(config.simulation.effect("core_customers", "urgent"))


@pytest.mark.parametrize("rule, message", [
    ({"when": {"column": "age", "below": 30, "at_least": 20}, "effects": {"friendly": 1.2}}, "exactly one of"),
    ({"when": {"column": "tier", "below": 3}, "effects": {"friendly": 1.2}}, "tier is compared with equals"),
    ({"when": {"column": "age", "below": 30}, "effects": {"cheerful": 1.2}}, "neither 'control' nor a configured tone"),
    ({"when": {"column": "first_name", "equals": "Ann"}, "effects": {"friendly": 1.2}}, "column"),
])
def test_a_wrong_heterogeneous_effect_is_a_clear_config_error(tmp_path, rule, message):
    import yaml

    from personalization_assets.campaign.config import load_campaign
    from personalization_assets_tests.pure_fixtures import CAMPAIGN_PATH

    raw = yaml.safe_load(CAMPAIGN_PATH.read_text())
    raw["simulation"]["heterogeneity"] = [rule]
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_campaign(path)


def test_expected_outcomes_are_what_the_simulation_draws_on_average():
    config = config_with(HETEROGENEITY)
    frame = simulated(config, 40_000, 0)
    expected = expected_outcomes(frame, config.simulation, frame["arm"].to_numpy())
    for column in ("opened", "clicked", "converted"):
        observed, mean = frame[column].mean(), expected[column].mean()
        standard_error = np.sqrt(expected[column] * (1 - expected[column])).mean() / np.sqrt(len(frame))
        assert abs(observed - mean) < 4 * standard_error, column


# --- the uplift model -----------------------------------------------------------------------


def test_the_t_learner_predicts_every_sendable_arm_and_nothing_else():
    config = config_with(HETEROGENEITY)
    frame = simulated(config, 8_000, 1)
    arms, segments = list(config.arm_names), catalog().ids
    available = np.ones((len(segments), len(arms)), dtype=bool)
    available[segments.index("at_risk"), arms.index("urgent")] = False  # as if its variant were blocked
    features = uplift_features(frame, segments)
    codes = pd.Categorical(frame["arm"], categories=arms).codes
    model = fit_t_learner(features, codes, frame["opened"].to_numpy(), arms, available, estimator="gradient_boosting", seed=0)
    predicted = model.predict(features)
    at_risk = (frame["segment"] == "at_risk").to_numpy()
    assert np.isnan(predicted[at_risk, arms.index("urgent")]).all()
    assert not np.isnan(predicted[~at_risk]).any()
    assert ((predicted[~np.isnan(predicted)] >= 0) & (predicted[~np.isnan(predicted)] <= 1)).all()
    best = model.best_arms(predicted)
    assert (best[at_risk] != arms.index("urgent")).all()
    # Young customers are predicted to do best with friendly, older ones with informational.
    young, old = (frame["age"] < 30).to_numpy(), (frame["age"] >= 60).to_numpy()
    assert (best[young] == arms.index("friendly")).mean() > 0.6
    assert (best[old] == arms.index("informational")).mean() > 0.5
    # Refitting on the same data gives the same model: a stable rollout.
    again = fit_t_learner(features, codes, frame["opened"].to_numpy(), arms, available, estimator="gradient_boosting", seed=0)
    np.testing.assert_array_equal(again.predict(features), predicted)


def test_an_arm_without_events_is_predicted_at_its_constant_rate():
    features = pd.DataFrame({name: np.arange(40.0) for name in ("a", "segment")}).assign(segment=0.0)
    codes = np.repeat([0, 1], 20)
    outcome = np.r_[np.zeros(20), np.tile([0, 1], 10)]
    model = fit_t_learner(features, codes, outcome, [CONTROL_ARM, "friendly"], np.ones((1, 2), dtype=bool), estimator="logistic", seed=0)
    predicted = model.predict(features)
    np.testing.assert_array_equal(predicted[:, 0], 0.0)


def test_age_drives_the_personalized_choice_when_effects_vary_with_age():
    config = config_with(HETEROGENEITY)
    frame = simulated(config, 20_000, 2)
    _, model = evaluate(frame, config, estimator="gradient_boosting")
    drivers = choice_drivers(model, uplift_features(frame, catalog().ids), seed=0)
    # Age decides who gets which tone; the historical open rate sets how likely anyone is to open.
    assert "age" in set(drivers["feature"].head(2))
    assert set(drivers["feature"]) == set(uplift_features(frame.head(1), catalog().ids).columns)


# --- the policy values ------------------------------------------------------------------------


def test_the_split_is_stable_and_of_the_configured_share():
    ids = pd.Series([f"C{i:07d}" for i in range(20_000)])
    part = split_of(ids, 0.5, 5, seed=3)
    np.testing.assert_array_equal(part, split_of(ids.iloc[::-1], 0.5, 5, seed=3)[::-1])
    assert abs((part >= 0).mean() - 0.5) < 0.02
    assert set(np.unique(part)) == {-1, 0, 1, 2, 3, 4}


def test_known_propensities_make_the_value_of_a_fixed_policy_unbiased_whatever_the_model():
    """Control for all is a fixed policy: its doubly robust value equals, on average over
    replicates, the true control rate, even with a poor outcome model."""
    config = config_with()
    errors = []
    for replicate in range(30):
        frame = simulated(config, 4_000, replicate)
        evaluation, _ = evaluate(frame, config, seed=replicate, folds=2)
        truth = true_values(frame, config, evaluation)
        errors.append(evaluation.values.set_index("policy").loc[CONTROL_FOR_ALL, "value"] - truth[CONTROL_FOR_ALL])
    assert abs(np.mean(errors)) < 3 * np.std(errors) / np.sqrt(len(errors))


def test_policy_value_intervals_cover_the_simulators_true_value():
    """Coverage of the true value of every candidate policy (the same customers, the same picks:
    each learned on the learning part), with heterogeneous effects: 200 replicates of 4,000 customers each (1,000 per arm; two
    cross-fitting folds, to keep the test quick: the fold count does not change the validity)."""
    config = config_with(HETEROGENEITY)
    covered = {policy: [] for policy in POLICIES}
    for replicate in range(200):
        frame = simulated(config, 4_000, replicate)
        evaluation, _ = evaluate(frame, config, seed=replicate, folds=2)
        truth = true_values(frame, config, evaluation)
        table = evaluation.values.set_index("policy")
        for policy in POLICIES:
            covered[policy].append(table.loc[policy, "ci_low"] <= truth[policy] <= table.loc[policy, "ci_high"])
    rates = {policy: float(np.mean(hits)) for policy, hits in covered.items()}
    # 95% nominal; 200 replicates give a Monte Carlo SE of 1.5 points: 3 SE either side.
    assert all(0.905 <= rate <= 0.995 for rate in rates.values()), rates


def test_revenue_policy_value_intervals_cover_the_simulators_true_revenue_per_recipient():
    """The same for revenue per recipient (a continuous outcome: ridge outcome models), on skewed
    simulated revenue: 100 replicates of 20,000 customers (every click converts, so about 900
    purchasers each), two folds. A normal interval on a mean of skewed amounts needs enough
    purchasers: with 8,000 customers (about 45 purchasers per arm on the evaluation part) coverage
    measured 0.89-0.95, with 20,000 0.95 for every policy (60 replicates)."""
    config = config_with(HETEROGENEITY, conversion_given_click=1.0)
    covered = {policy: [] for policy in POLICIES}
    for replicate in range(100):
        frame = simulated(config, 20_000, replicate)
        evaluation, model = evaluate(frame, config, seed=replicate, folds=2, outcome="revenue")
        truth = true_values(frame, config, evaluation, outcome="revenue")
        table = evaluation.values.set_index("policy")
        for policy in POLICIES:
            covered[policy].append(table.loc[policy, "ci_low"] <= truth[policy] <= table.loc[policy, "ci_high"])
    assert not hasattr(model.models[0], "predict_proba")  # regressors, not classifiers
    rates = {policy: float(np.mean(hits)) for policy, hits in covered.items()}
    # 95% nominal; 100 replicates give a Monte Carlo SE of 2.2 points: 3 SE either side.
    assert all(rate >= 0.885 for rate in rates.values()), rates


def test_without_heterogeneity_the_personalized_policy_passes_its_gate_at_most_alpha_of_the_time():
    """No effect varies inside a segment: nothing a per-customer model finds beats the best
    per-segment or single-tone policy, so its gate must not pass more often than alpha (0.05)."""
    config = config_with()
    passed = [evaluate(simulated(config, 4_000, replicate), config, seed=replicate, folds=2)[0].gate.passed for replicate in range(200)]
    # Binomial(200, 0.05): mean 10, P(X > 19) < 0.005.
    assert sum(passed) <= 19, sum(passed)


def test_with_heterogeneity_the_personalized_policy_beats_every_segment_level_policy():
    config = config_with(HETEROGENEITY)
    frame = simulated(config, 40_000, 3)
    evaluation, _ = evaluate(frame, config, estimator="gradient_boosting")
    truth = true_values(frame, config, evaluation)
    assert truth[PERSONALIZED] > max(truth[p] for p in POLICIES if p != PERSONALIZED)
    assert evaluation.gate.passed, evaluation.gate.summary()
    assert personalized_gate_passes(evaluation.values)
    values = evaluation.values.set_index("policy")
    assert values.loc[PERSONALIZED, "diff_ci_low"] > 0
    assert evaluation.gate.baseline in (BEST_SINGLE_TONE, "winner_per_segment")
    assert qini_coefficient(evaluation.qini) > 0


def test_the_gate_reads_back_from_a_stored_table():
    table = pd.DataFrame({"policy": [CONTROL_FOR_ALL, PERSONALIZED], "diff_ci_low": [0.0, 0.002], "gate_passed": [False, True]})
    assert personalized_gate_passes(table)
    assert not personalized_gate_passes(table.assign(diff_ci_low=[0.0, -0.001]))
    assert not personalized_gate_passes(table.assign(diff_ci_low=[0.0, np.nan]))
    assert not personalized_gate_passes(table.assign(gate_passed=[False, False]))  # e.g. the test's SRM flagged
    assert not personalized_gate_passes(table.iloc[:1])


def test_a_flagged_sample_ratio_test_wins_nothing_and_the_personalized_policy_does_not_ship():
    from personalization_assets.experiment.policies import (
        campaign_test_data,
        evaluate_campaign_policies,
    )
    from personalization_assets.stats import SrmResult

    config = config_with(HETEROGENEITY)
    frame = simulated(config, 40_000, 3)
    data = campaign_test_data(frame, config, catalog().ids)
    clean = SrmResult(chi2=1.0, p_value=0.5, flagged=False, expected={}, observed={})
    flagged = SrmResult(chi2=99.0, p_value=1e-9, flagged=True, expected={}, observed={})
    passed, _ = evaluate_campaign_policies(data, config, catalog().ids, clean)
    failed, _ = evaluate_campaign_policies(data, config, catalog().ids, flagged)
    assert passed.gate.passed and personalized_gate_passes(passed.values.assign(diff_ci_low=passed.values["diff_ci_low"]))
    assert not failed.gate.passed and "sample-ratio" in failed.gate.reason and not personalized_gate_passes(failed.values)
    assert set(failed.winners.values()) == {CONTROL_ARM} and set(passed.winners.values()) != {CONTROL_ARM}


def test_qini_curve_of_a_perfect_ranking_rises_above_the_random_line():
    # Customers 0..99 gain from the tone (arm 1) and customers 100..199 do not.
    rng = np.random.default_rng(0)
    n = 4000
    gains = np.r_[np.full(n // 2, 0.3), np.zeros(n // 2)]
    arm = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.2 + gains * arm).astype(float)
    predicted = np.column_stack([np.full(n, 0.2), 0.2 + gains])
    curve = qini_curve(predicted, np.ones(n, dtype=np.intp), arm, y)
    assert curve["qini"].iloc[0] == 0 and curve["fraction"].iloc[-1] == 1
    assert (curve["qini"] >= curve["random"] - 1e-3).all()
    assert qini_coefficient(curve) > 0.01


def test_no_email_customers_never_enter_the_policy_values():
    config = config_with()
    frame = simulated(config, 8_000, 4)
    holdout = frame.head(1_000).assign(arm="no_email", opened=0)
    alone, _ = evaluate(frame, config, seed=1)
    mixed, _ = evaluate(pd.concat([frame, holdout.assign(customer_id="H" + holdout["customer_id"])], ignore_index=True), config, seed=1)
    pd.testing.assert_frame_equal(alone.values, mixed.values)


def test_a_winner_whose_variant_cannot_be_sent_in_a_segment_falls_back_to_control():
    from personalization_assets.experiment.policies import sendable_winners

    config = config_with()
    frame = simulated(config, 8_000, 5)
    frame = frame[~((frame["segment"] == "at_risk") & (frame["arm"] == "friendly"))]  # as if at_risk:friendly were blocked
    data = RandomizedTest(frame, "opened", tuple(config.arm_names), tuple(catalog().ids),
                          design_propensities(frame, catalog().ids, config.arm_weights), blocked_arms=("urgent",))
    winners = sendable_winners({segment: "friendly" for segment in catalog().ids} | {"vip_champions": "urgent"}, data)
    assert winners["at_risk"] == CONTROL_ARM and winners["vip_champions"] == CONTROL_ARM
    assert winners["core_customers"] == "friendly"
    assert data.propensity[catalog().ids.index("at_risk"), list(config.arm_names).index("friendly")] == 0
    assert data.propensity[catalog().ids.index("at_risk")].sum() == pytest.approx(1)


def test_an_empty_evaluation_part_gives_a_flat_qini_curve():
    curve = qini_curve(np.zeros((0, 2)), np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp), np.zeros(0))
    assert (curve["qini"] == 0).all() and len(curve) == 21


def test_a_personalized_policy_that_raises_unsubscribes_beyond_its_margin_does_not_ship():
    """Each tone can hold its guardrail on average while the policy sends one exactly to the
    customers it drives away: the policy-level guardrail (doubly robust, against the baseline)
    catches that, and only that."""
    from personalization_assets.experiment.policies import policy_guardrails

    rng = np.random.default_rng(3)
    n = 40_000
    arm_codes = rng.integers(0, 2, n)  # control / friendly, 50/50 in one segment
    sensitive = rng.random(n) < 0.5  # friendly makes these customers unsubscribe (2% against 0.2%)
    rate = np.where((arm_codes == 1) & sensitive, 0.02, 0.002)
    frame = pd.DataFrame({"customer_id": [f"C{i}" for i in range(n)], "unsubscribed": (rng.random(n) < rate).astype(float)})
    data = RandomizedTest(frame.assign(segment="s", arm=np.where(arm_codes == 1, "friendly", CONTROL_ARM), opened=0),
                          "opened", (CONTROL_ARM, "friendly"), ("s",), np.array([[0.5, 0.5]]), guardrails=(("unsubscribed", 0.003),))
    rows = np.arange(n)
    learning, evaluation = rows[: n // 2], rows[n // 2:]
    seg_codes = np.zeros(n, dtype=np.intp)
    baseline = np.zeros(len(evaluation), dtype=np.intp)  # control for everyone
    targeted = np.where(sensitive[evaluation], 1, 0)  # friendly to exactly the sensitive customers: +0.9 points on average
    ((text, verdict),) = policy_guardrails(frame, data, learning, evaluation, seg_codes, arm_codes, targeted, baseline, alpha=0.05)
    assert verdict == "fails" and "unsubscribed vs the baseline" in text
    spared = np.where(~sensitive[evaluation], 1, 0)  # friendly to everyone else: no rise
    ((_, verdict),) = policy_guardrails(frame, data, learning, evaluation, seg_codes, arm_codes, spared, baseline, alpha=0.05)
    assert verdict == "holds"
