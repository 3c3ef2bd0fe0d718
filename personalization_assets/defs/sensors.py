"""The engagement sensor: a wave's ESP export landing in the engagement folder re-runs its analysis.

`paths.engagement/<wave>.csv` (the campaign's engagement folder) is the wave's engagement once the
send is over. When such a file appears or its content changes, the sensor requests one run of the
wave job, for that wave partition, over `engagement` and every wave-group asset downstream of it
(`experiment_results`, `experiment_report`, `rollout_recommendation`, ...): the wave's analysis is
redone on the imported data, and its assignments and messages are left as they were. When the
campaign tests on a share (`rollout.test_share`), the run also redoes the rollout that follows from
the test (`policy_values` ... `rollout_report`), unless that wave's rollout was already sent (then
only the test's analysis: a corrected export never causes a second, different rollout send); a
rollout's own export, `paths.engagement/rollout/<wave>.csv`, re-runs the rollout's engagement,
results and report.

- The cursor keeps, per file name, the content hash and modification time of the version last
  acted on; a file whose content did not change (touched, or copied again) requests nothing.
- Each request's run key names the wave, the content hash and the modification time, so the same
  file version never triggers twice, even if the cursor is reset.
- A file whose name is not a wave partition key (`latest.csv`, a Tuesday's date) is ignored and logged once;
  hidden files (`.name`, as atomic writers use while copying) are not looked at.
- A file for a wave that has not been assigned yet (no `assignments` materialization for it) is
  recorded without a request: the `engagement` step of that wave's own run, which comes after
  `assignments`, reads whatever file is there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from personalization_assets.defs.jobs import ANALYSIS_JOB
from personalization_assets.defs.partitions import (
    ROLLOUT_GROUP,
    WAVE_GROUP,
    wave_partitions,
)
from personalization_assets.defs.resources import CampaignResource

ENGAGEMENT_SENSOR = "engagement_file_sensor"
ENGAGEMENT_ASSET = dg.AssetKey("engagement")
ALLOCATION_ASSET = dg.AssetKey("arm_allocation")
ASSIGNMENTS_ASSET = dg.AssetKey("assignments")
ROLLOUT_ENGAGEMENT_ASSET = dg.AssetKey("rollout_engagement")
ROLLOUT_ASSIGNMENTS_ASSET = dg.AssetKey("rollout_assignments")
ROLLOUT_FOLDER = "rollout"


def engagement_selection(rollout: bool) -> dg.AssetSelection:
    """What a test's engagement file invalidates: the engagement and everything after it in its
    wave, and, when the campaign tests on a share, the rollout that follows from it. Also the
    wave's `arm_allocation`, which the results read: a wave assigned before that asset existed
    gets it, and an assigned wave's weights are kept as they were (`defs/assignment.assigned_allocation`)."""
    groups = (WAVE_GROUP, ROLLOUT_GROUP) if rollout else (WAVE_GROUP,)
    return (dg.AssetSelection.assets(ENGAGEMENT_ASSET).downstream() | dg.AssetSelection.assets(ALLOCATION_ASSET)) \
        & dg.AssetSelection.groups(*groups)


# What a rollout's engagement file (paths.engagement/rollout/<wave>.csv) invalidates: its engagement, results and report.
ROLLOUT_ENGAGEMENT_SELECTION = dg.AssetSelection.assets(ROLLOUT_ENGAGEMENT_ASSET).downstream()


@dataclass(frozen=True)
class FileVersion:
    sha256: str
    mtime_ns: int
    size: int

    def to_json(self) -> dict[str, object]:
        return {"sha256": self.sha256, "mtime_ns": self.mtime_ns, "size": self.size}

    @classmethod
    def from_json(cls, raw: dict) -> FileVersion:
        return cls(str(raw["sha256"]), int(raw["mtime_ns"]), int(raw["size"]))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_cursor(cursor: str | None) -> tuple[dict[str, FileVersion], set[str]]:
    if not cursor:
        return {}, set()
    raw = json.loads(cursor)
    return {name: FileVersion.from_json(v) for name, v in raw.get("files", {}).items()}, set(raw.get("ignored", []))


def _dump_cursor(files: dict[str, FileVersion], ignored: set[str]) -> str:
    return json.dumps({"files": {name: files[name].to_json() for name in sorted(files)}, "ignored": sorted(ignored)}, sort_keys=True)


def engagement_run_key(wave: str, version: FileVersion) -> str:
    return f"engagement:{wave}:{version.sha256[:16]}:{version.mtime_ns}"


def _wave_assigned(instance: dg.DagsterInstance, wave: str, asset_key: dg.AssetKey = ASSIGNMENTS_ASSET) -> bool:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[wave]), limit=1)
    return bool(records.records)


@dg.sensor(
    name=ENGAGEMENT_SENSOR,
    job_name=ANALYSIS_JOB,
    minimum_interval_seconds=30,
    description="Re-runs a wave's engagement, results and report (and its rollout) when its engagement CSV "
                "(paths.engagement/<wave>.csv, or rollout/<wave>.csv for a rollout's) appears or changes.",
)
def engagement_file_sensor(context: dg.SensorEvaluationContext, campaign: CampaignResource):
    folder = campaign.config.paths.engagement
    files, ignored = _load_cursor(context.cursor)
    if context.repository_def is None:
        raise dg.DagsterInvariantViolationError(f"{ENGAGEMENT_SENSOR} needs its Definitions to resolve the assets to re-run")
    graph = context.repository_def.asset_graph
    rollout = campaign.config.rollout is not None
    # Per folder: the asset whose materialization says the send happened, and what its file re-runs.
    stages = {folder: (ASSIGNMENTS_ASSET, engagement_selection(rollout))}
    if rollout:
        stages[folder / ROLLOUT_FOLDER] = (ROLLOUT_ASSIGNMENTS_ASSET, ROLLOUT_ENGAGEMENT_SELECTION)
    test_only = engagement_selection(False)

    requests: list[dg.RunRequest] = []
    present = sorted(p for stage_folder in stages if stage_folder.is_dir() for p in stage_folder.glob("*.csv")
                     if p.is_file() and not p.name.startswith("."))
    for path in present:
        wave = path.stem
        assigned_asset, stage_selection = stages[path.parent]
        name = path.relative_to(folder).as_posix()  # the cursor's key: rollout/<wave>.csv apart from <wave>.csv
        if not wave_partitions.has_partition_key(wave):
            if name not in ignored:
                context.log.warning(f"ignoring {path}: '{wave}' is not a wave partition key (expected e.g. "
                                    f"{wave_partitions.get_first_partition_key()}.csv)")
                ignored.add(name)
            continue
        known = files.get(name)
        try:
            stat = path.stat()
            if known and (known.mtime_ns, known.size) == (stat.st_mtime_ns, stat.st_size):
                continue  # unchanged since it was acted on: no need to read it again
            version = FileVersion(file_sha256(path), stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:  # removed (or renamed) since the folder was listed
            continue
        if known and known.sha256 == version.sha256:
            files[name] = version  # touched or copied again, same content: nothing to redo
            continue
        files[name] = version
        if not _wave_assigned(context.instance, wave, assigned_asset):
            context.log.info(f"{name}: wave {wave} has no {assigned_asset.to_user_string()} yet; its run will import the file")
            continue
        if path.parent == folder and rollout and _wave_assigned(context.instance, wave, ROLLOUT_ASSIGNMENTS_ASSET):
            # The rollout was already decided and its emails exported: a corrected test export re-runs the
            # test's analysis, never a second, different rollout send.
            stage_selection = test_only
            context.log.info(f"{name}: wave {wave}'s rollout was already sent; re-running the test's analysis only "
                             "(materialize the rollout group by hand to decide it again)")
        selection = sorted(stage_selection.resolve(graph), key=lambda key: key.to_user_string())
        context.log.info(f"{name}: {'changed' if known else 'new'} engagement for wave {wave}; requesting a re-run")
        requests.append(
            dg.RunRequest(
                run_key=engagement_run_key(wave if path.parent == folder else f"{wave}:{ROLLOUT_FOLDER}", version),
                partition_key=wave,
                asset_selection=selection,
                tags={"cpo/engagement_file": str(path), "cpo/engagement_sha256": version.sha256},
            )
        )
    # Forget files that were removed, so putting one back counts as new.
    names = {p.relative_to(folder).as_posix() for p in present if p.exists()}
    files = {name: v for name, v in files.items() if name in names}
    ignored &= names
    cursor = _dump_cursor(files, ignored)
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=cursor)
    return dg.SensorResult(skip_reason=dg.SkipReason(f"no new or changed engagement files in {folder}"), cursor=cursor)

