"""Where a report comes from: the code version that wrote it and how fresh its input files are.
Pure logic: no Dagster import."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import subprocess
from pathlib import Path

from personalization_assets.campaign.config import CampaignConfig
from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets.experiment.engagement import SOURCE_SIMULATED

DISTRIBUTION = "customer-personalization-orchestrator"


def code_version() -> str:
    """The installed distribution's version, plus the git commit when run from a checkout."""
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown version"
    commit = None
    try:
        found = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short=12", "HEAD"],
                               capture_output=True, text=True, timeout=5, check=False)
        if found.returncode == 0 and found.stdout.strip():
            commit = found.stdout.strip()
            status = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5, check=False)
            if status.returncode == 0 and status.stdout.strip():
                commit += " with uncommitted changes"
    except (OSError, subprocess.SubprocessError):
        commit = None
    return f"{DISTRIBUTION} {version}" + (f", git {commit}" if commit else "")


def modified_at(path: Path) -> str:
    stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc)
    return stamp.isoformat(timespec="seconds")


def data_freshness(config: CampaignConfig, wave: str, engagement_source: str) -> list[tuple[str, str]]:
    """Where the customers and the engagement came from, with the files' modification times."""
    customers = config.paths.customers
    lines = [("customers", f"{customers} (modified {modified_at(customers)})" if customers.is_file() else f"{customers} (file not found now)")]
    engagement_file = config.paths.engagement_file(wave)
    if engagement_source == SOURCE_SIMULATED:
        lines.append(("engagement", f"SIMULATED from the campaign's ground truth (no {engagement_file.name} in {engagement_file.parent})"))
    elif engagement_file.is_file():
        lines.append(("engagement", f"imported from {engagement_file} (modified {modified_at(engagement_file)})"))
    else:
        lines.append(("engagement", f"imported ({engagement_source}); {engagement_file} is no longer there"))
    return lines
