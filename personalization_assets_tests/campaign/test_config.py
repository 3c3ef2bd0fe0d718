"""Typed configuration: every mistake a user can make in a file they edit exits 64 with file and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from personalization_assets.campaign.config import CONTROL_ARM, load_campaign
from personalization_assets.campaign.environment import ServiceTuning
from personalization_assets.campaign.errors import ConfigError
from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets.cli import commands as cli

SAMPLE = (PROJECT_ROOT / "data" / "campaign.yaml").read_text()


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# (what the user wrote, the text replaced in the sample campaign, what the error must say)
CAMPAIGN_MISTAKES = [
    ("top_k: three", ("top_k: 3", "top_k: three"), "retrieval.top_k: Input should be a valid integer"),
    ("block_severity: high", ("block_severity: 4 ", "block_severity: high "), "safety.block_severity: Input should be 2, 4 or 6"),
    ("top_k: 0", ("top_k: 3", "top_k: 0"), "retrieval.top_k: Input should be greater than or equal to 1"),
    ("body_min_chars > body_max_chars", ("body_min_chars: 250", "body_min_chars: 1500"),
     "generation: body_min_chars (1500) must be less than body_max_chars (1200)"),
    ("misspelt alpha", ("alpha: 0.05", "alpah: 0.05"), "alpah: unknown key"),
    ("misspelt minimum_lift", ("minimum_lift: 0.10", "minimun_lift: 0.10"), "minimun_lift: unknown key"),
    ("duplicate arm", ("  friendly: 0.25\n", "  friendly: 0.25\n  urgent: 0.25\n"), "duplicate key 'urgent'"),
    ("arm without a tone", ("  friendly: 0.25\n", "  friendly: 0.25\n  playful: 0.25\n"), "arms: arms ['playful'] are neither 'control', 'no_email' nor a configured tone"),
    ("no control weight", ("  control: 0.25", "  control: 0"), "arms: must give the 'control' arm a positive weight"),
    ("negative weight", ("  urgent: 0.25", "  urgent: -1"), "arms.urgent: Input should be greater than or equal to 0"),
    ("control as a tone", ("tones: [urgent, informational, friendly]", "tones: [urgent, control]"), "'control' is the control arm, not a tone"),
    ("first wave not a Monday", ('first_wave: "2026-01-05"', 'first_wave: "2026-01-06"'), "first_wave: must be a Monday"),
    ("first wave not a date", ('first_wave: "2026-01-05"', 'first_wave: "next week"'), "first_wave: must be an ISO date"),
    ("alpha out of range", ("alpha: 0.05", "alpha: 3"), "alpha: Input should be less than or equal to 0.5"),
    ("unknown metric", ("primary: open_rate", "primary: revenue"), "metrics.primary: Input should be 'open_rate', 'click_rate', 'conversion_rate' or 'revenue_per_recipient'"),
    ("blank blocklist term", ("banned_claims: [miracle,", "banned_claims: ['',"), "safety.blocklists.banned_claims[0]"),
    ("unknown company setting", ("  name: Northwind Outfitters\n", "  name: Northwind Outfitters\n  website: x\n"), "company.website: unknown key"),
    ("not YAML", ("metrics:\n", "metrics: [\n"), "is not valid YAML"),
]


@pytest.mark.parametrize(("mistake", "edit", "message"), CAMPAIGN_MISTAKES, ids=[m[0] for m in CAMPAIGN_MISTAKES])
def test_each_campaign_mistake_names_the_file_and_key(tmp_path: Path, mistake, edit, message):
    path = tmp_path / "campaign.yaml"
    path.write_text(_edit(SAMPLE, *edit))
    with pytest.raises(ConfigError) as raised:
        load_campaign(path)
    assert str(raised.value).startswith(f"{path}: "), raised.value
    assert message in str(raised.value), raised.value


def test_the_sample_campaign_reads_as_typed_sections():
    config = load_campaign(PROJECT_ROOT / "data" / "campaign.yaml")
    assert config.retrieval.top_k == 3 and config.generation.body_length.min_chars == 250
    assert list(config.arm_weights) == [CONTROL_ARM, "urgent", "informational", "friendly"]
    assert sum(config.arm_weights.values()) == pytest.approx(1.0)
    assert config.metrics.all == ("open_rate", "click_rate", "conversion_rate")
    assert config.paths.customers == (PROJECT_ROOT / "data" / "customers.csv").resolve()
    assert config.experiment_id == "spring-outdoors-2026" and config.path.name == "campaign.yaml"
    with pytest.raises(Exception):  # settings are read-only once loaded
        config.alpha = 0.1  # type: ignore[misc]


def _cli_error(campaign_folder, capsys) -> str:
    code = cli.main(["run", "--campaign", str(campaign_folder.campaign)])
    captured = capsys.readouterr()
    assert code == cli.EXIT_USAGE, captured
    assert "Traceback" not in captured.err + captured.out
    return captured.err


@pytest.mark.parametrize(("mistake", "edit", "message"), CAMPAIGN_MISTAKES[:7], ids=[m[0] for m in CAMPAIGN_MISTAKES[:7]])
def test_cpo_run_exits_64_on_each_of_the_issues_campaign_mistakes(campaign_folder, capsys, mistake, edit, message):
    campaign_folder.campaign.write_text(_edit(campaign_folder.campaign.read_text(), *edit))
    err = _cli_error(campaign_folder, capsys)
    assert f"{campaign_folder.campaign}: " in err and message in err


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("segments.yaml", "    name: VIP champions\n", "    name: VIP champions\n    descripton: typo\n", "segments[0].descripton: unknown key"),
        ("segments.yaml", "  - id: at_risk\n", "  - id: At Risk\n", "segments[1]: id 'At Risk' must match"),
        ("segments.yaml", "segments:\n", "segment:\n", "non-empty 'segments' list"),
        ("segments.yaml", "    audiences: [High-Value, All]\n", "    audiences: High-Value\n", "segments[0].audiences: Input should be a valid tuple"),
    ],
)
def test_cpo_run_exits_64_on_segment_catalog_mistakes(campaign_folder, capsys, file, old, new, message):
    path = campaign_folder.data / file
    path.write_text(_edit(path.read_text(), old, new))
    err = _cli_error(campaign_folder, capsys)
    assert f"{path}: " in err and message in err


def test_cpo_run_exits_64_on_a_prompt_front_matter_mistake_before_anything_runs(campaign_folder, capsys):
    path = campaign_folder.root / "prompts" / "tones" / "urgent.md"
    path.write_text(_edit(path.read_text(), 'cta: "Shop now"', 'call_to_action: "Shop now"'))
    err = _cli_error(campaign_folder, capsys)
    assert f"{path}: " in err
    assert "front matter.call_to_action: unknown key" in err and "front matter.cta: required key is missing" in err


def test_cpo_run_exits_64_when_a_tone_has_no_prompt(campaign_folder, capsys):
    (campaign_folder.root / "prompts" / "tones" / "friendly.md").unlink()
    assert "friendly.md: prompt file not found" in _cli_error(campaign_folder, capsys)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CPO_MAX_CONCURRENCY", "many", "CPO_MAX_CONCURRENCY must be a number, got 'many'"),
        ("CPO_MAX_CONCURRENCY", "0", "CPO_MAX_CONCURRENCY input should be greater than 0, got '0'"),
        ("CPO_RETRY_MAX_BACKOFF_SECONDS", "-1", "CPO_RETRY_MAX_BACKOFF_SECONDS input should be greater than or equal to 0"),
        ("CPO_GENERATION_CACHE", "maybe", "CPO_GENERATION_CACHE must be one of"),
        ("CPO_RETRY_BUDGET_SECONDS", "0", "CPO_RETRY_BUDGET_SECONDS input should be greater than 0"),
    ],
)
def test_environment_tuning_is_typed(variable, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        ServiceTuning.from_environment({variable: value}, max_concurrency=4)


def test_environment_tuning_defaults_and_switches():
    tuning = ServiceTuning.from_environment({"CPO_GENERATION_CACHE": "off", "CPO_HTTP_TIMEOUT_SECONDS": " 5 "}, max_concurrency=3)
    assert (tuning.max_concurrency, tuning.timeout_seconds, tuning.use_cache, tuning.max_attempts) == (3, 5.0, False, 20)


MORE_MISTAKES = [
    ("quoted number", ("alpha: 0.05", 'alpha: "0.05"'), "alpha: Input should be a valid number"),
    ("quoted whole number", ("top_k: 3", 'top_k: "3"'), "retrieval.top_k: Input should be a valid integer"),
    ("no tone weighted", ("  urgent: 0.25\n  informational: 0.25\n  friendly: 0.25\n", "  urgent: 0\n"),
     "arms: must give at least one tone a positive weight"),
    ("tones not a list", ("tones: [urgent, informational, friendly]", "tones: urgent"), "tones: Input should be a valid tuple"),
    ("thompson with a rollout", ("alpha: 0.05", "alpha: 0.05\nallocation: thompson\nrollout:\n  test_share: 0.2"),
     "allocation: thompson adapts the weights wave by wave; rollout: tests once"),
    ("thompson floor above the tones' share", ("alpha: 0.05", "alpha: 0.05\nallocation: thompson\nthompson:\n  floor: 0.3"),
     "thompson.floor: 0.3 for each of 3 tones exceeds the tones' 75% share of the audience"),
    ("thompson with an unweighted tone", ("  friendly: 0.25\n", "  friendly: 0\nallocation: thompson\n"),
     "tones ['friendly'] have weight 0"),
    ("unknown allocation", ("alpha: 0.05", "alpha: 0.05\nallocation: bandit"), "allocation: Input should be 'fixed' or 'thompson'"),
    ("unknown thompson key", ("alpha: 0.05", "alpha: 0.05\nthompson:\n  floors: 0.1"), "thompson.floors: unknown key"),
]


@pytest.mark.parametrize(("mistake", "edit", "message"), MORE_MISTAKES, ids=[m[0] for m in MORE_MISTAKES])
def test_more_campaign_mistakes(tmp_path: Path, mistake, edit, message):
    path = tmp_path / "campaign.yaml"
    path.write_text(_edit(SAMPLE, *edit))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_campaign(path)


def test_without_paths_every_path_is_relative_to_the_campaign_folder(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)  # not the campaign's folder
    start, end = SAMPLE.index("paths:"), SAMPLE.index("# Ground truth")
    for section in ("", "paths:\n\n"):
        path = tmp_path / "campaign.yaml"
        path.write_text(SAMPLE[:start] + section + SAMPLE[end:])
        config = load_campaign(path)
        assert config.paths.customers == tmp_path / "customers.csv"
        assert config.paths.prompts == (tmp_path / ".." / "prompts").resolve()


def test_what_older_campaign_files_meant_still_reads_the_same(tmp_path: Path):
    path = tmp_path / "campaign.yaml"
    text = _edit(SAMPLE, "campaign_id: spring-outdoors-2026", "campaign_id: 2026")
    text = _edit(text, "experiment_id: spring-outdoors-2026 ", "experiment_id: 123 ")
    text = _edit(text, "banned_claims: [miracle, cure, risk-free, no risk, guaranteed results, lifetime guarantee]", "banned_claims:")
    start, end = text.index("arms:"), text.index("metrics:")
    path.write_text(text[:start] + "arms: {}\n\n" + text[end:])
    config = load_campaign(path)
    assert (config.campaign_id, config.experiment_id) == ("2026", "123")
    assert config.safety.blocklists["banned_claims"] == ()
    assert config.arm_weights == {arm: 0.25 for arm in (CONTROL_ARM, "urgent", "informational", "friendly")}
