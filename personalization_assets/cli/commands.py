"""`cpo`: run a whole campaign wave, generate sample data, plan sample sizes, open the UI.

`cpo run` executes the same Dagster jobs the UI and the schedule run, in the Dagster instance under
`$CPO_HOME/dagster`, so its runs show in `cpo ui` (or `dagster dev` with that DAGSTER_HOME).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import errno
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

# Only what `cpo --help` and the error handling need is imported here; pandas, DuckDB, Dagster and
# the campaign model are imported by the commands that use them.
from personalization_assets.campaign.errors import (
    AuditTrailError,
    ConfigError,
    DataContractError,
)
from personalization_assets.campaign.home_lock import HomeBusyError, exclusive_home
from personalization_assets.campaign.paths import (
    CAMPAIGN_ENV,
    PROJECT_ROOT,
    cpo_home,
    dagster_home,
    default_campaign_path,
)
from personalization_assets.warehouse import WarehouseBusy, select_warehouse

if TYPE_CHECKING:
    from personalization_assets.campaign.config import CampaignConfig

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_SAFETY_GATE = 2
EXIT_AUDIT_BROKEN = 3
EXIT_AWAITING_APPROVAL = 4
EXIT_USAGE = 64
EXIT_INTERNAL = 70  # a bug (sysexits EX_SOFTWARE): the message says how to get the traceback
EXIT_IO = 74  # CPO_HOME or an output cannot be written (EX_IOERR)
EXIT_NOT_DELIVERED = 69  # some messages of a send failed for good (EX_UNAVAILABLE)
EXIT_HOME_BUSY = 75  # another cpo command holds CPO_HOME (EX_TEMPFAIL: try again later)
DEBUG_ENV = "CPO_DEBUG"
DAGSTER_YAML = "telemetry:\n  enabled: false\n"


def prepare_instance_home() -> Path:
    """Point DAGSTER_HOME inside CPO_HOME (unless the user set it) so CLI runs show in the UI."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(dagster_home())))
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        settings.write_text(DAGSTER_YAML)
    return home


def wave_key_for(date: dt.date, first_wave: dt.date) -> str:
    """The wave partition (its Monday) that contains `date`."""
    if date < first_wave:
        raise ConfigError("--wave", f"{date} is before the campaign's first wave {first_wave}")
    return (date - dt.timedelta(days=date.weekday())).isoformat()


def wave_date(text: str) -> dt.date:
    """A --wave value: an ISO date, checked before anything runs (argparse reports it as a usage error)."""
    from personalization_assets.campaign.dates import iso_date

    try:
        return iso_date(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


class _Parser(argparse.ArgumentParser):
    """argparse, exiting 64 (EX_USAGE) on a usage error like every other input mistake, not 2."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _quiet_run_config(verbose: bool) -> dict:
    return {"loggers": {"console": {"config": {"log_level": "DEBUG" if verbose else "CRITICAL"}}}}


def _failed_checks(result) -> set[str]:
    return {evaluation.check_name for evaluation in result.get_asset_check_evaluations() if not evaluation.passed}


def _check_metadata(result, check_name: str) -> dict:
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.check_name == check_name:
            return dict(evaluation.metadata)
    return {}


def _check_lines(result) -> list[str]:
    lines = []
    for evaluation in result.get_asset_check_evaluations():
        status = "passed" if evaluation.passed else f"FAILED ({evaluation.severity.value})"
        description = evaluation.description or ""
        lines.append(f"  {evaluation.asset_key.to_user_string()}.{evaluation.check_name}: {status} {description}".rstrip())
    return lines


USER_MISTAKES = (ConfigError, DataContractError)


def load_campaign(path: Path | str) -> CampaignConfig:
    """The campaign file, read by the commands that need it (the model is not imported for `--help`)."""
    from personalization_assets.campaign.config import load_campaign as read_campaign

    return read_campaign(path)


def _run_error(result) -> tuple[str, int]:
    """The failed step and its error, and the exit code: 64 for a user's input mistake (a bad
    customers or suppression file), which is named without the exception's module path."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None:  # the user's exception, not Dagster's wrapper
                error = error.cause
            message = error.message.strip()
            if error.cls_name in {cls.__name__ for cls in USER_MISTAKES}:
                return f"{event.step_key}: {message.split(': ', 1)[1] if ': ' in message else message}", EXIT_USAGE
            if error.cls_name == "SendInProgress":  # another send holds the home's send lock: try again later
                return f"{event.step_key}: {message.split(': ', 1)[1] if ': ' in message else message}", EXIT_HOME_BUSY
            return f"{event.step_key}: {message}", EXIT_RUN_FAILED
    return "the run failed", EXIT_RUN_FAILED


@dataclass
class Session:
    """One campaign's Definitions and Dagster instance, as every command that runs jobs needs."""

    config: CampaignConfig
    defs: object
    instance: object
    run_config: dict

    @classmethod
    def open(cls, campaign: str | None, verbose: bool) -> Session:
        from personalization_assets.audience.segmentation import load_catalog
        from personalization_assets.messages.prompts import load_prompts

        campaign_path = Path(campaign or default_campaign_path()).resolve()
        config = load_campaign(campaign_path)
        # Every file a user edits is read before anything runs: a mistake in any of them is one
        # clear error (exit 64), not a failed step half-way through a run.
        load_prompts(config.paths.prompts, config.tones)
        load_catalog(config.paths.segments)
        # The code location builds its partitions from this campaign when it first loads (here, or
        # in a step process of the multiprocess executor, which inherits the environment).
        os.environ[CAMPAIGN_ENV] = str(campaign_path)
        from personalization_assets.definitions import (
            campaign_definitions,
            open_instance,
        )

        prepare_instance_home()
        return cls(config, campaign_definitions(campaign_path), open_instance(), _quiet_run_config(verbose))

    def segments(self) -> list[str]:
        from personalization_assets.defs.jobs import CONTENT_JOB

        return self.defs.resolve_job_def(CONTENT_JOB).partitions_def.get_partition_keys()

    def wave_for(self, date: dt.date | None) -> str:
        return wave_key_for(date or dt.date.today(), self.config.first_wave)

    def execute(self, job_name: str, *, tags: dict[str, str] | None = None, partition_key: str | None = None):
        """Run a job in this instance with the configured executor (`CPO_EXECUTOR`)."""
        from personalization_assets.definitions import run_job

        return run_job(self.defs, job_name, self.config.path, instance=self.instance, run_config=self.run_config,
                       tags=tags, partition_key=partition_key)

    def run_content(self, segments: list[str]) -> int | None:
        """Materialize the content assets of a contiguous range of segments in one run."""
        from personalization_assets.defs.jobs import CONTENT_JOB

        if any(segment not in self.segments() for segment in segments):
            raise ConfigError(self.config.paths.segments, f"unknown segment in {segments}; known: {self.segments()}")
        result = self.execute(
            CONTENT_JOB,
            tags={"dagster/asset_partition_range_start": segments[0], "dagster/asset_partition_range_end": segments[-1]},
        )
        print(f"content run {result.run_id} ({', '.join(segments)}): {'succeeded' if result.success else 'FAILED'}")
        print("\n".join(_check_lines(result)))
        if "safety_pass_rate" in _failed_checks(result):
            blocked = _check_metadata(result, "safety_pass_rate").get("blocked_reasons")
            listed = blocked.value if blocked is not None else "none recorded"
            print("error: the safety gate failed; nobody is assigned or sent anything. Blocked variants and why:\n"
                  + listed, file=sys.stderr)
            return EXIT_SAFETY_GATE
        if "reviewer_approval" in _failed_checks(result):
            waiting = _check_metadata(result, "reviewer_approval").get("pending_variants")
            print("the variants below await a reviewer (approval.mode: reviewer); nobody is assigned or sent anything until "
                  "each is approved or rejected: read them with `cpo review`, record with `cpo approve VARIANT ... --by NAME`, "
                  "then run again.\n" + (waiting.value if waiting is not None else ""), file=sys.stderr)
            return EXIT_AWAITING_APPROVAL
        if not result.success:
            message, code = _run_error(result)
            print(f"error: {message}", file=sys.stderr)
            return code
        return None

    def run_wave(self, wave: str, redecide_rollout: bool = False) -> int:
        from personalization_assets.cli.summary import wave_summary
        from personalization_assets.defs.jobs import WAVE_JOB

        failed = self._run_and_summarize(WAVE_JOB, "wave", wave, wave_summary)
        if failed is not None:
            return failed
        return EXIT_OK if self.config.rollout is None else self.run_rollout(wave, redecide_rollout)

    def run_rollout(self, wave: str, redecide: bool = False) -> int:
        """After a test on a share: value the policies on the test, send everyone else, measure it;
        a wave's rollout is decided once, unless `redecide`."""
        from personalization_assets.cli.summary import rollout_sent, rollout_summary
        from personalization_assets.defs.jobs import ROLLOUT_JOB

        if rollout_sent(select_warehouse(), wave) and not redecide:
            print(f"rollout: wave {wave}'s rollout was already decided and its emails exported; it is not decided again "
                  "(a second, different send). `cpo run --redecide-rollout` decides and exports it again.")
            return EXIT_OK
        export = self.config.paths.engagement_file(wave)
        if not export.is_file() and not self.config.rollout.from_simulated_engagement:
            print(f"rollout: waits for the test's engagement ({export} is not there yet; this wave's engagement is SIMULATED). "
                  "The engagement sensor runs the rollout when the export arrives (or run `cpo run` again then); "
                  "rollout.from_simulated_engagement: true decides it on simulated engagement, for a demonstration.")
            return EXIT_OK
        return self._run_and_summarize(ROLLOUT_JOB, "rollout", wave, rollout_summary) or EXIT_OK

    def run_wave_job(self, job_name: str, label: str, wave: str):
        """Run one job on a wave and print its outcome; returns its result, or the exit code of a failed run."""
        result = self.execute(job_name, partition_key=wave)
        print(f"{label} run {result.run_id} ({wave}): {'succeeded' if result.success else 'FAILED'}")
        if not result.success:
            message, code = _run_error(result)
            print(f"error: {message}", file=sys.stderr)
            return code
        return result

    def _run_and_summarize(self, job_name: str, label: str, wave: str, summary) -> int | None:
        """Run one wave job; print its outcome, then `summary` of what it stored and its checks.
        Returns the exit code of a failed run, None when it succeeded."""
        result = self.run_wave_job(job_name, label, wave)
        if isinstance(result, int):
            return result
        print(summary(select_warehouse(), self.config, wave))
        print("checks:")
        print("\n".join(_check_lines(result)))
        return None


def command_run(args: argparse.Namespace) -> int:
    session = Session.open(args.campaign, args.verbose)
    wave = session.wave_for(args.wave)
    segments = session.segments()
    print(f"campaign {session.config.campaign_id}: {len(segments)} segments, wave {wave}, home {cpo_home()}")
    failed = session.run_content(segments)
    return failed if failed is not None else session.run_wave(wave, args.redecide_rollout)


def command_backfill(args: argparse.Namespace) -> int:
    """Re-materialize one segment's content (after editing its content or prompts), then a wave."""
    session = Session.open(args.campaign, args.verbose)
    wave = session.wave_for(args.wave) if args.wave else None  # a bad wave is refused before anything runs
    if args.segment not in session.segments():
        raise ConfigError("--segment", f"{args.segment!r} is not a segment of the catalog: {', '.join(session.segments())}")
    failed = session.run_content([args.segment])
    if failed is not None or wave is None:
        return failed or EXIT_OK
    return session.run_wave(wave)


def command_send(args: argparse.Namespace) -> int:
    """Build the wave's MIME messages and deliver them (SMTP, the outbox, or an ESP bundle); resumable."""
    from personalization_assets.cli.summary import delivery_summary, wave_rows_stored

    session = Session.open(args.campaign, args.verbose)
    wave = session.wave_for(args.wave)
    if not wave_rows_stored(select_warehouse(), "assignments", wave):
        raise ConfigError("--wave", f"wave {wave} has not been decided yet: run `cpo run --wave {wave}` first, then send it")
    method = "esp_bundle" if args.esp_bundle else "transport"
    session.run_config = {**session.run_config, "ops": {"deliveries": {"config": {"method": method}}}}
    from personalization_assets.defs.jobs import DELIVERY_JOB

    failed = session.run_wave_job(DELIVERY_JOB, "send", wave)
    if isinstance(failed, int):
        return failed
    from personalization_assets.defs.resources import select_transport

    rehearsal = select_transport(os.environ).rehearses(method)
    summary, left, failed_for_good = delivery_summary(session.config, wave, rehearsal=rehearsal)
    print(summary)
    return EXIT_HOME_BUSY if left else EXIT_NOT_DELIVERED if failed_for_good else EXIT_OK


def command_unsubscribes(args: argparse.Namespace) -> int:
    """Add a file of unsubscribes (customer_id and/or email, optional token, reason) to the suppression list."""
    from personalization_assets.campaign.paths import delivery_dir
    from personalization_assets.delivery.ledger import LEDGER_FILE, Ledger
    from personalization_assets.delivery.unsubscribes import read_unsubscribes

    entries = read_unsubscribes(Path(args.file), secret=os.environ.get("CPO_UNSUBSCRIBE_SECRET") or None)
    with Ledger(delivery_dir() / LEDGER_FILE) as ledger:
        added = ledger.add_suppressions(entries, f"import {Path(args.file).name}")
    print(f"{len(entries)} unsubscribes read from {args.file}: {added} new on the suppression list, {len(entries) - added} already on it; "
          "waves decided from now on send them nothing, and a send that runs from now on skips them")
    return EXIT_OK


def command_plan(args: argparse.Namespace) -> int:
    """Customers needed for the configured minimum lift, and the MDE of each scope at hand."""
    import pandas as pd

    from personalization_assets.audience.customers import load_customers
    from personalization_assets.audience.segmentation import (
        assign_segments,
        load_catalog,
    )
    from personalization_assets.experiment.planning import base_rate_for, plan_campaign

    config = load_campaign(args.campaign or default_campaign_path())
    customers = load_customers(config.paths.customers)
    segments = assign_segments(customers, load_catalog(config.paths.segments))
    sizes = pd.concat([pd.Series({"overall": len(customers)}), segments.value_counts(sort=False)])
    base_rate = args.base_rate if args.base_rate is not None else base_rate_for(config, customers)
    result = plan_campaign(config, sizes, base_rate=base_rate, power=args.power, min_lift=args.min_lift, sd=args.sd)
    print("\n".join(result.lines()))
    table = result.scopes.assign(mde=result.scopes["mde"].map(lambda v: "n/a" if v != v else f"{v:.1%}"))
    print(table.to_string(index=False))
    return EXIT_OK


def command_audit(args: argparse.Namespace) -> int:
    from personalization_assets.audit.trail import (
        STAGE_ROLLOUT,
        STAGE_TEST,
        AuditLog,
        explain,
    )
    from personalization_assets.campaign.paths import audit_dir, exports_dir
    from personalization_assets.messages.rendering import (
        EXPORT_FILE,
        ROLLOUT_EXPORT_FILE,
    )

    log = AuditLog(args.audit_dir or audit_dir())
    if args.audit_command == "repair":
        print(log.repair())
        return EXIT_OK
    if args.audit_command == "verify":
        checked, problem = log.verify()
        if problem:
            print(f"audit trail BROKEN at {problem} ({log.chain_path})")
            return EXIT_AUDIT_BROKEN
        # What the chain cannot show alone: the warehouse and the exports against what it sealed.
        mismatches = log.verify_against(select_warehouse(), exports_dir(), {STAGE_TEST: EXPORT_FILE, STAGE_ROLLOUT: ROLLOUT_EXPORT_FILE})
        if mismatches:
            print(f"audit trail does NOT match what was stored ({log.chain_path}):\n" + "\n".join(f"- {m}" for m in mismatches))
            return EXIT_AUDIT_BROKEN
        unapproved = log.unapproved_sends()
        if len(unapproved):
            examples = ", ".join(f"{r.customer_id} ({r.variant_id})" for r in unapproved.head(5).itertuples())
            print(f"audit trail intact, but {len(unapproved)} sends were of variants whose latest verdict is not "
                  f"'approved': {examples} ({log.chain_path})")
            return EXIT_AUDIT_BROKEN
        signed = " and HMAC-signed" if os.environ.get("CPO_AUDIT_KEY") else " (unsigned: set CPO_AUDIT_KEY to sign records)"
        print(f"audit trail intact: {checked} records verified{signed}, every sealed decision and email file included, "
              f"the warehouse's assignments and variant texts and the exported emails equal what was sealed, "
              f"every send of an approved variant ({log.chain_path})")
        return EXIT_OK
    wave = wave_key_for(args.wave, dt.date.min) if args.wave else None
    print(explain(log, args.customer_id, wave))
    return EXIT_OK


def command_review(args: argparse.Namespace) -> int:
    from personalization_assets.audit.trail import AuditLog
    from personalization_assets.campaign.paths import audit_dir
    from personalization_assets.cli.review import review_text

    config = load_campaign(args.campaign or default_campaign_path())
    if config.approval.mode != "reviewer":
        print(f"note: approval.mode is {config.approval.mode}: the automated screen approves; reviews are recorded, not required")
    print(review_text(config, select_warehouse(), AuditLog(audit_dir()), show_all=args.all))
    return EXIT_OK


def command_approve(args: argparse.Namespace) -> int:
    from personalization_assets.audit.trail import AuditLog
    from personalization_assets.campaign.paths import audit_dir
    from personalization_assets.cli.review import approve

    config = load_campaign(args.campaign or default_campaign_path())
    print(approve(config, select_warehouse(), AuditLog(audit_dir()), args.variant_ids, by=args.by,
                  all_pending=args.all_pending, reject=args.reject, reason=args.reason))
    return EXIT_OK


def command_generate_data(args: argparse.Namespace) -> int:
    from personalization_assets.campaign.sample_data import write_sample_data

    written = write_sample_data(Path(args.out), n_customers=args.customers, seed=args.seed, company=args.company, goal=args.goal,
                                rollout=args.rollout)
    print(f"wrote {len(written)} files to {Path(args.out).resolve()} ({args.customers} customers, seed {args.seed})")
    return EXIT_OK


def command_ui(args: argparse.Namespace) -> int:
    """`dagster dev` on this project's workspace with the CLI's instance, on loopback."""
    prepare_instance_home()
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", args.host, "-p", str(args.port)]
    return subprocess.call(command, env={**os.environ, "CPO_HOME": str(cpo_home())})


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cpo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a whole campaign wave: every segment's content, then the wave")
    run.add_argument("--campaign", help="campaign file (default: $CPO_CAMPAIGN or data/campaign.yaml)")
    run.add_argument("--wave", type=wave_date, help="any date in the wave's week, YYYY-MM-DD (default: today)")
    run.add_argument("--verbose", action="store_true", help="show Dagster's step logs")
    run.add_argument("--redecide-rollout", action="store_true",
                     help="with rollout.test_share: decide and export the wave's rollout again even if it was already sent")
    run.set_defaults(handler=command_run, writes_home=True)

    generate = sub.add_parser("generate-data", help="write the seeded sample campaign (customers, content, catalog, config)")
    generate.add_argument("--out", default="data", help="folder to write (default: data)")
    generate.add_argument("--customers", type=int, default=20000, help="number of customers (default: 20000)")
    generate.add_argument("--seed", type=int, default=20260105)
    generate.add_argument("--company", help="company name for the campaign file (default: the sample's)")
    generate.add_argument("--goal", help="the campaign's goal, in a sentence (default: the sample's)")
    generate.add_argument("--rollout", action="store_true", help="test on 20%% of each segment, then roll out the personalized policy "
                          "(or the winners); simulated effects that vary inside segments")
    generate.set_defaults(handler=command_generate_data)

    backfill = sub.add_parser("backfill", help="re-materialize one segment's content, then optionally re-run a wave")
    backfill.add_argument("--segment", required=True, help="segment id (a partition key of the content assets)")
    backfill.add_argument("--wave", type=wave_date, help="also re-run the wave containing this date, YYYY-MM-DD")
    backfill.add_argument("--campaign", help="campaign file (default: $CPO_CAMPAIGN or data/campaign.yaml)")
    backfill.add_argument("--verbose", action="store_true", help="show Dagster's step logs")
    backfill.set_defaults(handler=command_backfill, writes_home=True)

    plan = sub.add_parser("plan", help="how many customers the campaign needs, and the MDE of each segment")
    plan.add_argument("--campaign", help="campaign file (default: $CPO_CAMPAIGN or data/campaign.yaml)")
    plan.add_argument("--base-rate", type=float, help="control rate of the primary metric (default: customers' historical mean)")
    plan.add_argument("--sd", type=float, help="standard deviation per customer of an amount metric (revenue_per_recipient), "
                                               "with --base-rate its mean")
    plan.add_argument("--min-lift", type=float, help="relative lift to detect (default: the campaign's minimum_lift)")
    plan.add_argument("--power", type=float, default=0.8)
    plan.set_defaults(handler=command_plan)

    audit = sub.add_parser("audit", help="verify the audit trail, or explain what a customer was (not) sent and why")
    audit.add_argument("--audit-dir", help="audit folder (default: $CPO_HOME/audit)")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_sub.add_parser("verify", help="check the hash chain, every sealed file, and the warehouse and exports against them")
    audit_sub.add_parser("repair", help="set a torn last record (an interrupted append) aside so the trail can continue"
                         ).set_defaults(writes_home=True)
    explain_parser = audit_sub.add_parser("explain", help="why a customer got (or did not get) which message")
    explain_parser.add_argument("customer_id")
    explain_parser.add_argument("--wave", type=wave_date, help="any date in the wave's week, YYYY-MM-DD (default: every wave)")
    audit.set_defaults(handler=command_audit)

    review = sub.add_parser("review", help="show each variant awaiting a reviewer: text, verdict, cited documents, diff")
    review.add_argument("--campaign", default=None, help="campaign file (default: CPO_CAMPAIGN or data/campaign.yaml)")
    review.add_argument("--all", action="store_true", help="show every variant, not only the pending ones")
    review.set_defaults(handler=command_review)
    approve_parser = sub.add_parser("approve", help="record a reviewer's approval (or rejection) of variants' exact text")
    approve_parser.add_argument("variant_ids", nargs="*", help="variant ids, e.g. at_risk:urgent control")
    approve_parser.add_argument("--by", required=True, help="the reviewer's name (recorded in the audit trail)")
    approve_parser.add_argument("--all-pending", action="store_true", help="every variant awaiting review")
    approve_parser.add_argument("--reject", action="store_true", help="reject instead: the variant's customers are held out")
    approve_parser.add_argument("--reason", default="", help="why (required with --reject)")
    approve_parser.add_argument("--campaign", default=None, help="campaign file (default: CPO_CAMPAIGN or data/campaign.yaml)")
    approve_parser.set_defaults(handler=command_approve, writes_home=True)
    send = sub.add_parser("send", help="build a decided wave's MIME messages and deliver them (SMTP, the outbox, or an ESP bundle)")
    send.add_argument("--wave", type=wave_date, help="any date in the wave's week, YYYY-MM-DD (default: today)")
    send.add_argument("--esp-bundle", action="store_true", help="write an ESP import bundle (recipients CSV, one template per variant) "
                      "instead of sending")
    send.add_argument("--campaign", help="campaign file (default: $CPO_CAMPAIGN or data/campaign.yaml)")
    send.add_argument("--verbose", action="store_true", help="show Dagster's step logs")
    send.set_defaults(handler=command_send, writes_home=True)
    unsubscribes = sub.add_parser("unsubscribes", help="the suppression list shared by the campaigns of this CPO_HOME")
    unsubscribes_sub = unsubscribes.add_subparsers(dest="unsubscribes_command", required=True, parser_class=_Parser)
    import_parser = unsubscribes_sub.add_parser("import", help="add a CSV of unsubscribes (customer_id and/or email; optional token, "
                                                "reason, date) to the suppression list")
    import_parser.add_argument("file")
    import_parser.set_defaults(handler=command_unsubscribes, writes_home=True)
    ui = sub.add_parser("ui", help="start the Dagster UI (dagster dev) with the CLI's instance")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(handler=command_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Dagster flags its beta APIs on every import; a campaign run's output is for campaign facts.
    warnings.filterwarnings("ignore", message=".*is currently in beta.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        with exclusive_home(cpo_home()) if getattr(args, "writes_home", False) else contextlib.nullcontext():
            return args.handler(args)
    except AuditTrailError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_AUDIT_BROKEN
    except (HomeBusyError, WarehouseBusy) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_HOME_BUSY
    except Exception as exc:
        # A user's mistake can surface wrapped by Dagster (a definitions load error): the cause
        # named in the chain is what the user must fix.
        mistake = _user_mistake(exc)
        if mistake is not None:
            print(f"error: {mistake}", file=sys.stderr)
            return EXIT_USAGE
        if os.environ.get(DEBUG_ENV):
            raise
        unwritable = _os_error(exc)
        if unwritable is not None:
            print(f"error: cannot write {unwritable.filename or cpo_home()}: {unwritable.strerror} "
                  f"(CPO_HOME is {cpo_home()}; nothing of this step was kept)", file=sys.stderr)
            return EXIT_IO
        print(f"internal error: {type(exc).__name__}: {exc}\nThis is a bug in cpo; run again with {DEBUG_ENV}=1 for the traceback "
              "and report it.", file=sys.stderr)
        return EXIT_INTERNAL


_UNWRITABLE = {errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EDQUOT}


def _os_error(exc: BaseException | None) -> OSError | None:
    """A file-system refusal in the chain (read-only home, full disk, no permission), which the
    user can fix; a database's "disk is full" counts as one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in _UNWRITABLE:
            return exc
        if "disk is full" in str(exc) or "No space left on device" in str(exc):
            return OSError(errno.ENOSPC, "No space left on device (the database could not write)")
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _user_mistake(exc: BaseException | None) -> ConfigError | DataContractError | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (ConfigError, DataContractError)):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
