"""The wave report: its numbers parse back to experiment_results, its files are valid and
self-contained, and a wave without a reliable winner says so and why."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import re
import subprocess
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pypdf
import pytest

from personalization_assets.campaign.config import (
    CONTROL_ARM,
    SimulationEffects,
    SimulationSettings,
)
from personalization_assets.experiment.assignment import build_assignments
from personalization_assets.experiment.engagement import (
    SOURCE_IMPORTED,
    SOURCE_SIMULATED,
    simulate_engagement,
)
from personalization_assets.experiment.joins import analysis_frame
from personalization_assets.experiment.results import OVERALL, compute_results
from personalization_assets.explain.models import explore_clusters
from personalization_assets.messages.variants import variant_id
from personalization_assets.report import (
    ReportInputs,
    build_report,
    code_version,
    cost_summary,
    data_freshness,
    render_html,
    write_report,
)
from personalization_assets.report import provenance as report_module
from personalization_assets.report.charts import (
    Estimate,
    ForestRow,
    Polygon,
    forest_plot,
)
from personalization_assets.report.model import (
    Bullets,
    Para,
    Pre,
    Report,
    Section,
    Subhead,
    Table,
)
from personalization_assets.report.pdf import latin1
from personalization_assets_tests.pure_fixtures import (
    campaign,
    catalog,
    customer_segments,
    measured_customers,
)

WAVE = "2026-01-05"
NO_EFFECT = (("control", 1.0), ("urgent", 1.0), ("informational", 1.0), ("friendly", 1.0))
FRIENDLY_WINS = (("control", 1.0), ("urgent", 1.0), ("informational", 1.0), ("friendly", 1.5))
FIXED_TIME = dt.datetime(2026, 1, 12, 9, 30, tzinfo=dt.timezone.utc)


# ---------------------------------------------------------------------------------------------
# Inputs built the way the wave assets build them


def make_variants(segments: list[str]) -> pd.DataFrame:
    """message_variants as the content assets store it (control shared by id and prompt)."""
    rows = []
    for segment in segments:
        for arm in campaign().arm_names:
            vid = variant_id(segment, arm)
            rows.append({
                "segment": segment, "variant_id": vid, "arm": arm, "tone": None if arm == CONTROL_ARM else arm,
                "subject": f"Subject {vid}", "body": f"Hi {{{{first_name}}}}, this is {vid}.", "cta": "Shop now",
                "citations": "DOC-008,DOC-015" if arm == CONTROL_ARM else f"DOC-0{10 + len(segment) % 9},DOC-032",
                "backend": "local-template", "model": "template-v1",
                "prompt_sha256": hashlib.sha256(vid.encode()).hexdigest(),
                "input_tokens": 900, "output_tokens": 150 + len(vid), "cost_usd": 0.0, "refusal": "",
            })
    return pd.DataFrame(rows)


def make_verdicts(variants: pd.DataFrame, blocked: frozenset[str] = frozenset()) -> pd.DataFrame:
    """safety_verdicts: approved except the variant ids in `blocked`, with a compliance reason."""
    is_blocked = variants["variant_id"].isin(blocked)
    return pd.DataFrame({
        "segment": variants["segment"], "variant_id": variants["variant_id"], "arm": variants["arm"],
        "decision": np.where(is_blocked, "blocked", "approved"),
        "hate": 0, "self_harm": 0, "sexual": 0, "violence": np.where(is_blocked, 4, 0),
        "blocklist_hits": "", "rule_hits": np.where(is_blocked, "false_urgency", ""),
        "reasons": np.where(is_blocked, "compliance: false urgency ('last chance')", ""),
        "policy_version": "test-1", "backend": "local-safety",
    })


@dataclasses.dataclass(frozen=True)
class Wave:
    inputs: ReportInputs


@lru_cache(maxsize=8)
def simulated_wave(n: int, effects: tuple, seed: int = 11, blocked: frozenset[str] = frozenset(),
                   drop_control_share: float = 0.0) -> Wave:
    config = campaign()
    customers = customer_segments(n, seed)
    variants = make_variants(catalog().ids)
    verdicts = make_verdicts(variants, blocked)
    assignments = build_assignments(customers.assign(contact_hold=""), variants, verdicts, experiment_id=config.experiment_id,
                                    weights=config.arm_weights, wave=WAVE)
    if drop_control_share:
        # Lose part of the control arm, as a broken export would: a sample-ratio mismatch.
        control = assignments.index[assignments["arm"] == CONTROL_ARM]
        assignments = assignments.drop(control[: int(len(control) * drop_control_share)]).reset_index(drop=True)
    settings = SimulationSettings(seed=seed, conversion_given_click=0.12, effects=SimulationEffects(default=dict(effects)))
    engagement = simulate_engagement(measured_customers(assignments, customers), settings, WAVE)
    frame = analysis_frame(assignments, engagement, customers)
    segments = [s for s in catalog().ids if s in set(frame["segment"])]
    results = compute_results(frame, config, wave=WAVE, segments=segments, source=SOURCE_SIMULATED)
    corpus = pd.DataFrame({"document_id": ["DOC-008", "DOC-015", "DOC-032"],
                           "title": ["Spring sale", "Returns policy", "Gold tier benefits"]})
    inputs = ReportInputs(
        config=config, catalog=catalog(), wave=WAVE, results=results, assignments=assignments, verdicts=verdicts,
        variants=variants, customer_segments=customers, engagement=engagement,
        exploration=explore_clusters(customers, sample_size=4000, k_range=range(2, 6)), corpus=corpus,
        freshness=[("customers", "customers.csv (modified 2026-01-04T10:00:00+00:00)")],
        code_version="customer-personalization-orchestrator 0.0.test", generated_at=FIXED_TIME,
    )
    return Wave(inputs)


@lru_cache(maxsize=8)
def rendered(n: int, effects: tuple, **options) -> tuple:
    inputs = simulated_wave(n, effects, **options).inputs
    built = build_report(inputs)
    return built, render_html(built)


# ---------------------------------------------------------------------------------------------
# Reading the HTML back


class TableReader(HTMLParser):
    """Every table by id: rows of (row data attributes, {data-col: cell text})."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[tuple[dict, dict]]] = {}
        self.elements: list[tuple[str, dict]] = []
        self._table = None
        self._row = None
        self._cell = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = ({k.removeprefix("data-"): v for k, v in attrs.items() if k.startswith("data-")}, {})
        elif tag == "td" and self._row is not None:
            self._cell = attrs.get("data-col")
            self._text = []

    def handle_data(self, data):
        if self._cell is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row[1][self._cell] = "".join(self._text)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row[1]:
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def read_tables(document: str) -> TableReader:
    reader = TableReader()
    reader.feed(document)
    return reader


def percent(text: str) -> float:
    return float("nan") if text == "–" else float(text.rstrip("%").replace(",", "")) / 100


def interval(text: str) -> tuple[float, float]:
    if text == "–":
        return float("nan"), float("nan")
    low, high = re.fullmatch(r"\[([^,]+), ([^\]]+)\]", text).groups()
    return percent(low), percent(high)


def integer(text: str) -> int:
    return int(text.replace(",", ""))


def assert_shown(shown: float, value: float, half_step: float, what: str) -> None:
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(shown), what
    else:
        assert abs(shown - value) <= half_step + 1e-12, f"{what}: shown {shown}, table {value}"


def assert_p_shown(text: str, value: float, what: str) -> None:
    if text == "<0.0001":
        assert value < 1e-4, what
    else:
        assert abs(float(text) - value) <= 5e-5 + 1e-12, f"{what}: shown {text}, table {value}"


PCT = 0.0005  # half of the displayed 0.1%


# ---------------------------------------------------------------------------------------------
# Numbers


def test_every_results_number_in_the_html_equals_experiment_results():
    inputs = simulated_wave(20_000, FRIENDLY_WINS).inputs
    _, document = rendered(20_000, FRIENDLY_WINS)
    tables = read_tables(document).tables
    results = inputs.results
    scopes = ["overall", *[s for s in catalog().ids if s in set(results["scope"])]]
    checked = 0
    for scope in scopes:
        rows = tables[f"results-{scope}"]
        shown = results[(results["scope"] == scope) & results["metric"].isin(inputs.config.metrics.all)]
        assert len(rows) == len(shown)  # every metric × arm, control included (the guardrails have their own table)
        for attrs, cells in rows:
            row = results[(results["scope"] == attrs["scope"]) & (results["metric"] == attrs["metric"])
                          & (results["arm"] == attrs["arm"])].iloc[0]
            what = f"{scope}/{attrs['metric']}/{attrs['arm']}"
            assert integer(cells["n"]) == row["n"], what
            assert integer(cells["successes"]) == row["successes"], what
            assert_shown(percent(cells["rate"]), row["rate"], PCT, what + " rate")
            if attrs["arm"] == CONTROL_ARM:
                assert cells["rel_lift"] == "control"
                continue
            assert_shown(percent(cells["rel_lift"]), row["rel_lift"], PCT, what + " lift")
            low, high = interval(cells["rel_lift_ci"])
            assert_shown(low, row["rel_lift_ci_low"], PCT, what + " ci low")
            assert_shown(high, row["rel_lift_ci_high"], PCT, what + " ci high")
            assert_shown(percent(cells["cuped_rel_lift"]), row["cuped_rel_lift"], PCT, what + " cuped")
            low, high = interval(cells["cuped_rel_lift_ci"])
            assert_shown(low, row["cuped_rel_lift_ci_low"], PCT, what + " cuped ci low")
            assert_shown(high, row["cuped_rel_lift_ci_high"], PCT, what + " cuped ci high")
            assert_p_shown(cells["p_value"], row["p_value"], what + " p")
            assert_p_shown(cells["p_value_adjusted"], row["p_value_adjusted"], what + " p adjusted")
            expected_significant = ("yes" if row["significant"] else
                                    f"n/a: {row['unmeasurable_reason']}" if row["unmeasurable_reason"] else "no")
            assert cells["significant"] == expected_significant, what
            shown_chance = cells["chance_to_beat_control"]
            if shown_chance == ">99.9%":
                assert row["chance_to_beat_control"] > 0.999, what
            elif shown_chance == "<0.1%":
                assert row["chance_to_beat_control"] < 0.001, what
            else:
                assert_shown(percent(shown_chance), row["chance_to_beat_control"], PCT, what + " chance")
            assert_shown(percent(cells["mde"]), row["mde"], PCT, what + " mde")
            checked += 1
    assert checked == (len(scopes)) * len(campaign().metrics.all) * (len(campaign().arm_names) - 1)


def test_summary_design_and_cost_numbers_equal_the_tables():
    inputs = simulated_wave(20_000, FRIENDLY_WINS).inputs
    report, document = rendered(20_000, FRIENDLY_WINS)
    tables = read_tables(document).tables
    results, assignments, config = inputs.results, inputs.assignments, inputs.config
    primary = results[results["metric"] == config.metrics.primary]
    for attrs, cells in tables["summary"]:
        scope = attrs["scope"]
        assert integer(cells["n"]) == primary.loc[primary["scope"] == scope, "n"].sum()
        best = primary[(primary["scope"] == scope) & (primary["arm"] != CONTROL_ARM)].sort_values("rel_lift").iloc[-1]
        assert cells["best_arm"] == best["arm"] == attrs["arm"]
        assert_shown(percent(cells["rel_lift"]), best["rel_lift"], PCT, f"summary {scope}")
        low, high = interval(cells["rel_lift_ci"])
        assert_shown(low, best["rel_lift_ci_low"], PCT, f"summary {scope} ci")
        assert_shown(high, best["rel_lift_ci_high"], PCT, f"summary {scope} ci")
        assert_p_shown(cells["p_value_adjusted"], best["p_value_adjusted"], f"summary {scope} p")
    overall = tables["summary"][0][1]
    assert overall["verdict"] == "winner: friendly"
    assert report.headline.startswith("Winner overall: friendly")

    counts = assignments.groupby("arm").agg(assigned=("customer_id", "size"), sent=("sent", "sum"))
    for attrs, cells in tables["arms"]:
        assert integer(cells["assigned"]) == counts.loc[attrs["arm"], "assigned"]
        assert integer(cells["sent"]) == counts.loc[attrs["arm"], "sent"]
    by_segment = pd.crosstab(assignments["segment"], assignments["arm"])
    for attrs, cells in tables["arm_segment"]:
        if attrs["segment"] != "all":
            for arm in config.arm_names:
                assert integer(cells[arm].split(" ")[0]) == by_segment.loc[attrs["segment"], arm]
    assert integer(tables["arm_segment"][-1][1]["total"]) == len(assignments)

    variants = inputs.variants
    total = tables["cost"][-1][1]
    assert integer(total["calls"]) == variants["prompt_sha256"].nunique()
    assert integer(total["variants"]) == len(variants)
    distinct = variants.drop_duplicates("prompt_sha256")
    assert integer(total["input_tokens"]) == distinct["input_tokens"].sum()
    assert integer(total["output_tokens"]) == distinct["output_tokens"].sum()
    assert tables["cost"][0][1]["cache_hits"] == "n/a (embedded backend)"


def test_markdown_summary_has_the_headline_and_each_scope():
    inputs = simulated_wave(20_000, FRIENDLY_WINS).inputs
    report, _ = rendered(20_000, FRIENDLY_WINS)
    markdown = report.markdown
    assert report.title in markdown and report.headline in markdown
    primary = inputs.results[inputs.results["metric"] == inputs.config.metrics.primary]
    names = {s.segment_id: s.name for s in catalog().segments}
    for scope in primary["scope"].unique():
        best = primary[(primary["scope"] == scope) & (primary["arm"] != CONTROL_ARM)].sort_values("rel_lift").iloc[-1]
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {names.get(scope, scope)} |"))
        assert f"| {best['arm']} | {best['rel_lift']:+.1%} |" in line
    assert f"sent {int(inputs.assignments['sent'].sum()):,} of {len(inputs.assignments):,} customers" in markdown


def test_segment_verdicts_follow_the_rollout_rule():
    """A segment wins only when its own gate and the overall lift gate pass (rollout_recommendation's rule)."""
    report, document = rendered(20_000, FRIENDLY_WINS)
    summary = read_tables(document).tables["summary"]
    from personalization_assets.experiment.gates import rollout_recommendations

    inputs = simulated_wave(20_000, FRIENDLY_WINS).inputs
    config = inputs.config
    own = rollout_recommendations(inputs.results, scopes=[a["scope"] for a, _ in summary], primary_metric=config.metrics.primary,
                                  minimum_lift=config.minimum_lift, alpha=config.alpha).set_index("scope")
    for attrs, cells in summary:
        expected = own.loc[attrs["scope"], "recommended_arm"] if own.loc[attrs["scope"], "has_reliable_winner"] else None
        assert cells["verdict"] == (f"winner: {expected}" if expected else "no reliable winner")


# ---------------------------------------------------------------------------------------------
# Honest summaries


def test_a_null_effect_wave_says_no_reliable_winner_and_why():
    report, document = rendered(4_000, NO_EFFECT)
    assert report.headline.startswith("No reliable winner overall:")
    assert "not significant" in report.headline
    assert "underpowered: MDE" in report.headline and "> target 10%" in report.headline
    tables = read_tables(document).tables
    assert {cells["verdict"] for _, cells in tables["summary"]} == {"no reliable winner"}
    assert "Winner overall" not in document
    assert "**No reliable winner overall:" in report.markdown
    assert "Keep sending the control message" in document


def test_sample_ratio_mismatch_is_no_reliable_winner_whatever_the_lift():
    report, document = rendered(8_000, FRIENDLY_WINS, drop_control_share=0.3)
    assert report.headline.startswith("No reliable winner overall:")
    assert "sample-ratio mismatch" in report.headline
    assert "FLAGGED" in document
    assert {cells["verdict"] for _, cells in read_tables(document).tables["summary"]} == {"no reliable winner"}
    assert "(FLAGGED)" in report.markdown


def test_blocked_variants_and_held_out_customers_are_reported_with_reasons():
    inputs = simulated_wave(6_000, FRIENDLY_WINS, blocked=frozenset({"at_risk:urgent"})).inputs
    _, document = rendered(6_000, FRIENDLY_WINS, blocked=frozenset({"at_risk:urgent"}))
    tables = read_tables(document).tables
    verdicts = {attrs["variant"]: cells for attrs, cells in tables["verdicts"]}
    assert verdicts["at_risk:urgent"]["decision"] == "blocked"
    assert "false urgency" in verdicts["at_risk:urgent"]["reasons"]
    assert tables["verdicts"][0][0]["variant"] == "at_risk:urgent"  # blocked variants come first
    assert verdicts["control"]["segments"] == "all segments"
    held = int((~inputs.assignments["sent"]).sum())
    assert held > 0
    assert integer(tables["held_out"][0][1]["customers"]) == held
    assert tables["held_out"][0][1]["hold_reason"] == "variant_blocked"
    at_risk = next(cells for attrs, cells in tables["arm_segment"] if attrs["segment"] == "at_risk")
    assert at_risk["urgent"].endswith(f"({held:,})")
    citations = {(cells["segment"], cells["document_id"]): cells for _, cells in tables["citations"]}
    assert citations[("VIP champions", "DOC-032")]["title"] == "Gold tier benefits"


def test_simulated_engagement_is_in_the_title_only_when_simulated():
    inputs = simulated_wave(4_000, NO_EFFECT).inputs
    assert "(SIMULATED ENGAGEMENT)" in build_report(inputs).title
    imported = dataclasses.replace(inputs, results=inputs.results.assign(engagement_source=SOURCE_IMPORTED))
    built = build_report(imported)
    assert "SIMULATED" not in built.title
    assert "Simulated engagement" not in render_html(built)


# ---------------------------------------------------------------------------------------------
# Files


def test_html_has_no_external_references():
    _, document = rendered(4_000, NO_EFFECT)
    elements = read_tables(document).elements
    assert not {tag for tag, _ in elements} & {"script", "link", "img", "iframe", "object", "embed", "video", "audio", "source", "base"}
    for tag, attrs in elements:
        for name, value in attrs.items():
            value = value or ""
            assert "://" not in value and not value.startswith("//"), (tag, name, value)
            if name in ("href", "src", "xlink:href", "action"):
                assert value.startswith("#"), (tag, name, value)
    assert "url(" not in document and "@import" not in document
    assert document.count("<svg") >= 4  # forest plots inline: one per metric, one per segment breakdown


def test_write_report_writes_a_valid_pdf_and_html(tmp_path: Path):
    inputs = simulated_wave(4_000, NO_EFFECT).inputs
    files = write_report(tmp_path / "reports" / WAVE, inputs)
    assert files.html.read_text().startswith("<!doctype html>")
    data = files.pdf.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    pdf = pypdf.PdfReader(files.pdf)
    assert len(pdf.pages) > 0
    text = "\n".join(page.extract_text() for page in pdf.pages)
    squashed = " ".join(text.split())
    assert "No reliable winner" in squashed
    assert latin1(files.report.title) in squashed
    overall = inputs.results[(inputs.results["scope"] == OVERALL) & (inputs.results["arm"] != CONTROL_ARM)
                             & inputs.results["metric"].isin(inputs.config.metrics.all)]  # the guardrails: their own table
    for value in overall["rel_lift"]:
        assert f"{value:+.1%}" in squashed
    assert str(files.html) in files.markdown and str(files.pdf) in files.markdown


def test_latin1_spells_out_what_the_core_fonts_cannot_show():
    assert latin1("p ≥ 0.05 – ok → next") == "p >= 0.05 - ok -> next"
    assert latin1("chi² × 2") == "chi² × 2"
    assert latin1("名") == "?"


# ---------------------------------------------------------------------------------------------
# Pieces


def test_cost_counts_cache_hits_when_recorded():
    variants = make_variants(["vip_champions", "at_risk"])
    assert (cost_summary(variants)["cache_hits"] == "n/a (embedded backend)").all()
    cached = variants.assign(backend="azure-openai", model="gpt-4o-mini", cost_usd=0.01,
                             cache_hit=variants["arm"] == CONTROL_ARM)
    summary = cost_summary(cached).iloc[0]
    assert summary["cache_hits"] == 2
    assert summary["calls"] == 6  # the control rows were answered from the cache
    assert summary["cost_usd"] == pytest.approx(0.06)
    assert summary["variants"] == 8
    assert cost_summary(variants.assign(backend="azure-openai"))["cache_hits"].iloc[0] == "n/a (not recorded)"


def test_code_version_never_fails_without_git(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    version = code_version()
    assert version.startswith(report_module.DISTRIBUTION) and "git" not in version


def test_data_freshness_names_the_files_and_their_times(tmp_path: Path):
    base = campaign()
    config = base.model_copy(update={"paths": base.paths.model_copy(update={"customers": tmp_path / "customers.csv", "engagement": tmp_path / "engagement"})})
    config.paths.customers.write_text("customer_id\n")
    simulated = dict(data_freshness(config, WAVE, SOURCE_SIMULATED))
    assert "modified" in simulated["customers"] and "SIMULATED" in simulated["engagement"]
    config.paths.engagement.mkdir()
    (config.paths.engagement / f"{WAVE}.csv").write_text("customer_id,opened,clicked,converted\n")
    imported = dict(data_freshness(config, WAVE, SOURCE_IMPORTED))
    assert imported["engagement"].startswith(f"imported from {config.paths.engagement / (WAVE + '.csv')} (modified 20")


def test_forest_plot_draws_every_interval_and_clips_huge_ones():
    rows = [
        ForestRow("open_rate", "urgent", (Estimate("raw", 0.05, -0.01, 0.11, False), Estimate("CUPED", 0.04, 0.0, 0.08))),
        ForestRow("open_rate", "friendly", (Estimate("raw", 0.5, -2.5, 3.5, True),)),
        ForestRow("open_rate", "informational", (Estimate("raw", float("nan"), float("nan"), float("nan")),)),
    ]
    figure = forest_plot(rows, title="t", references=[(0.1, "target +10%")])
    svg = figure.to_svg()
    assert svg.count("<circle") == 2 + 2  # two raw estimates + the legend's two circles
    assert "+5.0% [-1.0%, +11.0%]" in svg and "no estimate" in svg
    assert sum(isinstance(item, Polygon) for item in figure.items) == 2  # both ends of the huge interval clipped


def test_html_escapes_every_value_and_keeps_only_bold_markup():
    hostile = '<script>alert("x")</script> & \'quoted\''
    report = Report(
        title=hostile, subtitle=hostile, simulated=False, headline=hostile, markdown="",
        sections=[Section("s", hostile, [
            Para(f"**{hostile}** then {hostile}"),
            Bullets([hostile]),
            Subhead(hostile),
            Pre(hostile),
            Table("t", [hostile], [[hostile]], col_keys=[hostile], row_attrs=[{"k": hostile}], caption=hostile),
        ])],
    )
    document = render_html(report)
    assert "<script" not in document and 'alert("x")' not in document
    assert "<b>&lt;script&gt;" in document
    reader = read_tables(document)
    attrs, cells = reader.tables["t"][0]
    assert attrs == {"k": hostile} and cells == {hostile: hostile}


def test_a_shared_request_counts_once_with_its_cost_whichever_row_comes_first():
    variants = make_variants(["vip_champions", "at_risk"]).assign(backend="azure-openai", model="gpt-4o-mini", cost_usd=0.01,
                                                                  input_tokens=100)
    control = variants["arm"] == CONTROL_ARM
    variants.loc[control, "prompt_sha256"] = "shared"
    first_control = variants.index[control][0]
    variants.loc[control & (variants.index != first_control), ["cost_usd", "input_tokens"]] = 0  # the paid-once repeat
    for ordered in (variants, variants.iloc[::-1]):
        summary = cost_summary(ordered).iloc[0]
        assert summary["calls"] == 7 and summary["cost_usd"] == pytest.approx(0.07) and summary["input_tokens"] == 700
