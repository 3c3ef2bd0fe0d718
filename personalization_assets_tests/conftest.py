"""Shared fixtures: a complete campaign folder in a temporary directory, and its Definitions."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets.campaign.sample_data import write_sample_data

TEST_CUSTOMERS = 2000
TEST_WAVE = "2026-11-16"


@dataclass
class CampaignFolder:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def campaign(self) -> Path:
        return self.data / "campaign.yaml"

    @property
    def warehouse(self) -> Path:
        return self.root / "home" / "warehouse.duckdb"

    def edit_campaign(self, **changes) -> None:
        raw = yaml.safe_load(self.campaign.read_text())
        for dotted, value in changes.items():
            node = raw
            *parents, leaf = dotted.split("__")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        self.campaign.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(autouse=True)
def _campaign_env_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cpo` commands point CPO_CAMPAIGN at their campaign; no test leaks that to the next."""
    monkeypatch.delenv("CPO_CAMPAIGN", raising=False)


@pytest.fixture
def campaign_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CampaignFolder:
    """The sample campaign (2,000 customers) with its prompts, and CPO_HOME inside tmp_path."""
    write_sample_data(tmp_path / "data", n_customers=TEST_CUSTOMERS)
    shutil.copytree(PROJECT_ROOT / "prompts", tmp_path / "prompts")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CPO_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    return CampaignFolder(tmp_path)
