"""`cpo` end to end: a campaign run, the safety gate's exit code, backfill, data generation."""

import pandas as pd
import pytest

from personalization_assets.cli import commands as cli
from personalization_assets_tests.conftest import TEST_CUSTOMERS, TEST_WAVE


@pytest.mark.e2e
def test_cpo_run_prints_summary_and_report(campaign_folder, capsys):
    code = cli.main(["run", "--campaign", str(campaign_folder.campaign), "--wave", "2026-11-18"])
    out = capsys.readouterr().out
    assert code == cli.EXIT_OK
    assert f"wave {TEST_WAVE}" in out  # a Wednesday maps to its Monday's wave
    assert "segments (customers):" in out and "variants: " in out and "arms: " in out
    assert "open_rate" in out and "safety_pass_rate: passed" in out and "lift_threshold" in out
    report = campaign_folder.root / "home" / "reports" / TEST_WAVE / "report.html"
    assert f"report: {report}" in out and report.is_file()
    # Runs are recorded in the instance under CPO_HOME, so the UI shows them.
    assert any((campaign_folder.root / "home" / "dagster").rglob("*.db"))


@pytest.mark.e2e
def test_cpo_run_exits_2_when_the_safety_gate_fails(campaign_folder, capsys):
    campaign_folder.edit_campaign(safety__blocklists={"test_list": ["Northwind Outfitters"]})
    code = cli.main(["run", "--campaign", str(campaign_folder.campaign), "--wave", TEST_WAVE])
    captured = capsys.readouterr()
    assert code == cli.EXIT_SAFETY_GATE
    assert "safety gate failed" in captured.err
    assert "wave run" not in captured.out
    # Every blocked variant is listed with its reasons (here: all 24 verdicts of 19 variants).
    listed = [line for line in captured.err.splitlines() if line.startswith("- ")]
    assert len(listed) == 24 and all("blocklist test_list:Northwind Outfitters" in line for line in listed)
    assert "- control (at_risk): " in captured.err and "- vip_champions:urgent (vip_champions): " in captured.err


def test_cpo_run_reports_a_bad_campaign_file(campaign_folder, capsys):
    campaign_folder.edit_campaign(alpha=3)
    code = cli.main(["run", "--campaign", str(campaign_folder.campaign)])
    assert code == cli.EXIT_USAGE
    assert "campaign.yaml: alpha: Input should be less than or equal to 0.5 (got 3)" in capsys.readouterr().err


@pytest.mark.e2e
def test_cpo_backfill_one_segment_then_wave(materialized_copy, capsys):
    # The copy is a campaign whose content and wave TEST_WAVE ran, in the CLI's instance.
    campaign_folder = materialized_copy
    code = cli.main(["backfill", "--segment", "at_risk", "--wave", TEST_WAVE, "--campaign", str(campaign_folder.campaign)])
    out = capsys.readouterr().out
    assert code == cli.EXIT_OK
    assert "(at_risk): succeeded" in out and f"({TEST_WAVE}): succeeded" in out


def test_cpo_generate_data(tmp_path, capsys):
    assert cli.main(["generate-data", "--out", str(tmp_path / "d"), "--customers", "300", "--seed", "7"]) == cli.EXIT_OK
    customers = pd.read_csv(tmp_path / "d" / "customers.csv")
    assert len(customers) == 300
    assert (tmp_path / "d" / "campaign.yaml").is_file() and (tmp_path / "d" / "segments.yaml").is_file()
    assert len(list((tmp_path / "d" / "content").glob("*.json"))) >= 30
    assert TEST_CUSTOMERS != 300  # the fixture's campaign is untouched by this command


def test_cpo_plan_answers_how_many_customers(campaign_folder, capsys):
    assert cli.main(["plan", "--campaign", str(campaign_folder.campaign)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "customers needed per analysed scope:" in out
    assert "over 9 comparisons" in out  # 3 tones x 3 metrics, the Holm family of a results table
    assert "overall" in out and "core_customers" in out


def test_plan_is_consistent_with_the_mde_it_reports():
    from personalization_assets.campaign.config import load_campaign
    from personalization_assets.campaign.paths import PROJECT_ROOT
    from personalization_assets.experiment.planning import plan_campaign

    config = load_campaign(PROJECT_ROOT / "data" / "campaign.yaml")
    first = plan_campaign(config, pd.Series({"overall": 1000}), base_rate=0.25)
    needed = first.requirement.total_customers
    # At exactly the planned size, the detectable lift is the configured minimum lift.
    at_plan = plan_campaign(config, pd.Series({"overall": needed}), base_rate=0.25)
    assert abs(at_plan.scopes["mde"].iloc[0] - config.minimum_lift) < 0.005
    assert bool(at_plan.scopes["enough"].iloc[0]) and not bool(first.scopes["enough"].iloc[0])
    assert first.scopes["mde"].iloc[0] > config.minimum_lift


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CPO_MAX_CONCURRENCY", "abc", "CPO_MAX_CONCURRENCY must be a number"),
        ("AZURE_SEARCH_ENDPOINT", "https://search.example", "AZURE_SEARCH_API_KEY must be set too"),
    ],
)
def test_an_environment_mistake_exits_64_in_a_fresh_process(campaign_folder, variable, value, message):
    """In a new process the definitions load with the environment: its mistakes are exit 64 too."""
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "OPENAI_"))}
    done = subprocess.run([sys.executable, "-m", "personalization_assets.cli", "run", "--campaign", str(campaign_folder.campaign)],
                          env={**environ, variable: value}, capture_output=True, text=True, timeout=120)
    assert done.returncode == cli.EXIT_USAGE, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("argv", [["run", "--wave", "2026-11-xx"], ["backfill", "--segment", "at_risk", "--wave", "11/30/2026"],
                                  ["audit", "explain", "C1", "--wave", "tomorrow"]])
def test_a_bad_wave_is_a_usage_error_before_anything_runs(campaign_folder, capsys, argv):
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, *(["--campaign", str(campaign_folder.campaign)] if argv[0] != "audit" else [])])
    assert exited.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "expected a date as YYYY-MM-DD" in err and "Traceback" not in err
    assert not (campaign_folder.root / "home" / "dagster").exists() or not any((campaign_folder.root / "home" / "dagster").rglob("*.db"))


def test_an_unknown_segment_is_refused_before_anything_runs(campaign_folder, capsys):
    code = cli.main(["backfill", "--segment", "no_such_segment", "--campaign", str(campaign_folder.campaign)])
    assert code == cli.EXIT_USAGE
    assert "'no_such_segment' is not a segment of the catalog: vip_champions" in capsys.readouterr().err


def test_a_second_command_on_a_busy_home_refuses(campaign_folder, capsys):
    from personalization_assets.campaign.home_lock import exclusive_home
    from personalization_assets.campaign.paths import cpo_home

    with exclusive_home(cpo_home()):
        code = cli.main(["run", "--campaign", str(campaign_folder.campaign), "--wave", TEST_WAVE])
    err = capsys.readouterr().err
    assert code == cli.EXIT_HOME_BUSY
    assert f"{cpo_home()} is in use by cpo (pid " in err and "set CPO_HOME to another folder" in err


def test_the_home_lock_is_released_when_its_holder_dies(tmp_path):
    import subprocess
    import sys

    from personalization_assets.campaign.home_lock import exclusive_home

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from personalization_assets.campaign.home_lock import exclusive_home; "
                               f"ctx = exclusive_home(Path({str(tmp_path)!r})); ctx.__enter__(); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Exception, match="is in use by cpo"):
            with exclusive_home(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive_home(tmp_path):  # a killed holder leaves no stale lock
        pass


def test_an_unwritable_home_is_named_without_a_traceback(campaign_folder, capsys, monkeypatch, tmp_path):
    # A home that cannot be created (a file stands in the way): the same refusal as a read-only
    # folder or a full disk, and one that holds when the tests run as root.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("CPO_HOME", str(blocker / "home"))
    code = cli.main(["run", "--campaign", str(campaign_folder.campaign), "--wave", TEST_WAVE])
    err = capsys.readouterr().err
    assert code == cli.EXIT_IO and "cannot write" in err and "Not a directory" in err and "Traceback" not in err


def test_an_unexpected_error_is_reported_without_a_traceback(monkeypatch, capsys):
    def broken(args):
        raise KeyError("boom")

    monkeypatch.setattr(cli, "command_plan", broken)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    code = cli.main(["plan"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_INTERNAL and "internal error: KeyError: 'boom'" in err and f"{cli.DEBUG_ENV}=1" in err
