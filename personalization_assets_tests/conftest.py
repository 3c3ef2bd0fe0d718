"""Shared fixtures: a complete campaign folder in a temporary directory, and one materialized campaign.

`materialized_campaign` runs the sample campaign's content and one wave once per session; tests
that only read it share it, and `materialized_copy` gives a test its own copy (warehouse, exports,
reports, audit trail and Dagster instance) to change, for the price of a folder copy.
"""

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    # The runs that materialized it, for the session's materialized campaign (`materialized_campaign`).
    runs: dict = field(default_factory=dict, compare=False)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def campaign(self) -> Path:
        return self.data / "campaign.yaml"

    @property
    def warehouse(self) -> Path:
        return self.root / "home" / "warehouse.duckdb"

    def definitions(self):
        from personalization_assets.definitions import campaign_definitions

        return campaign_definitions(self.campaign, warehouse=self.warehouse)

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
def _campaign_env_restored(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """`cpo` commands point CPO_CAMPAIGN at their campaign; no test leaks that to the next. Every
    test starts with a CPO_HOME of its own (caches included), never the working directory's."""
    monkeypatch.delenv("CPO_CAMPAIGN", raising=False)
    if not os.environ.get("CPO_HOME"):  # a module's fixture may have set one for all its tests
        monkeypatch.setenv("CPO_HOME", str(tmp_path_factory.mktemp("cpo-home")))


def _write_campaign(root: Path) -> CampaignFolder:
    write_sample_data(root / "data", n_customers=TEST_CUSTOMERS, copy_prompts=False)  # the project's layout: prompts beside data/
    shutil.copytree(PROJECT_ROOT / "prompts", root / "prompts")
    (root / "home").mkdir()
    return CampaignFolder(root)


def _use_home(folder: CampaignFolder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CPO_HOME", str(folder.home))
    monkeypatch.setenv("DAGSTER_HOME", str(folder.dagster_home))


@pytest.fixture
def campaign_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CampaignFolder:
    """The sample campaign (2,000 customers) with its prompts, and CPO_HOME inside tmp_path."""
    folder = _write_campaign(tmp_path)
    _use_home(folder, monkeypatch)
    return folder


@pytest.fixture(scope="session")
def materialized_campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CampaignFolder]:
    """The sample campaign with every segment's content and the wave TEST_WAVE materialized, once
    per session, in a Dagster instance under its CPO_HOME (as `cpo run` leaves it). Read only:
    a test that changes anything takes `materialized_copy`."""
    import dagster as dg

    from personalization_assets_tests.defs.pipeline import (
        materialize_segments,
        materialize_wave,
    )

    folder = _write_campaign(tmp_path_factory.mktemp("materialized"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        _use_home(folder, monkeypatch)
        monkeypatch.delenv("CPO_CAMPAIGN", raising=False)
        folder.dagster_home.mkdir()
        defs = folder.definitions()
        with dg.DagsterInstance.local_temp(tempdir=str(folder.dagster_home)) as instance:
            segments = defs.resolve_job_def("campaign_content").partitions_def.get_partition_keys()
            folder.runs["content"] = materialize_segments(defs, instance, segments)
            folder.runs["wave"] = materialize_wave(defs, instance, TEST_WAVE)
    assert folder.runs["content"].success and folder.runs["wave"].success
    yield folder


@pytest.fixture
def materialized_copy(materialized_campaign: CampaignFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CampaignFolder:
    """A copy of the session's materialized campaign of the test's own, with CPO_HOME pointing at it."""
    root = tmp_path / "campaign"
    shutil.copytree(materialized_campaign.root, root)
    folder = CampaignFolder(root)
    _use_home(folder, monkeypatch)
    return folder
