"""The Dagster code location: every definition in `personalization_assets/defs/`, as Dagster loads it.

`workspace.yaml`, `[tool.dagster]` and `[tool.dg]` all point here. The definitions are module-level
objects in the `defs` package, collected by Dagster's own loader (`dg.components.load_defs`), so
`dg list defs`, `dg check defs`, `dagster definitions validate` and the UI see the same graph.
Partitions come from the code location's campaign (`CPO_CAMPAIGN`, else `data/campaign.yaml`).

`campaign_definitions(path)` binds the same definitions to another campaign file with the same
segments and first wave (a generated copy, a test folder), with resources for that file.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

import personalization_assets.defs as defs_package
from personalization_assets.audience.segmentation import load_catalog
from personalization_assets.campaign.config import load_campaign
from personalization_assets.campaign.errors import ConfigError
from personalization_assets.campaign.paths import CAMPAIGN_ENV, PROJECT_ROOT
from personalization_assets.defs.jobs import executor_def, executor_name
from personalization_assets.defs.partitions import CAMPAIGN_PATH, matches_code_location
from personalization_assets.defs.resources import campaign_resources
from personalization_assets.messages.prompts import prompt_files_version


@functools.cache
def code_location() -> dg.Definitions:
    """Everything defined at module level in the `defs` package, with the code location's resources."""
    loaded = dg.components.load_defs(defs_package, project_root=PROJECT_ROOT)
    versioned = dg.Definitions(
        assets=with_prompt_version(loaded.assets, load_campaign(CAMPAIGN_PATH)), asset_checks=loaded.asset_checks, jobs=loaded.jobs,
        schedules=loaded.schedules, sensors=loaded.sensors, resources=loaded.resources,
    )
    return dg.Definitions.merge(versioned, dg.Definitions(executor=executor_def()))


def campaign_definitions(
    campaign_path: Path | str | None = None, *, warehouse: Path | None = None, environ: Mapping[str, str] | None = None
) -> dg.Definitions:
    """The code location's definitions with resources for `campaign_path` (default: the code
    location's campaign), a warehouse file, and backends chosen from `environ`."""
    campaign_path = Path(campaign_path or CAMPAIGN_PATH).resolve()
    config = load_campaign(campaign_path)
    # Built first: a mistake in the campaign or the environment is a ConfigError of its own, not
    # an error wrapped by Dagster's loader.
    resources = campaign_resources(config, warehouse=warehouse, environ=os.environ if environ is None else environ)
    if not matches_code_location(load_catalog(config.paths.segments), config.first_wave):
        raise ConfigError(
            campaign_path,
            f"its segments, first wave or rule columns differ from those of the loaded code location ({CAMPAIGN_PATH}); "
            f"load the definitions for it with {CAMPAIGN_ENV}={campaign_path}",
        )
    loaded = code_location()
    return dg.Definitions(
        assets=with_prompt_version(loaded.assets, config), asset_checks=loaded.asset_checks, jobs=loaded.jobs,
        schedules=loaded.schedules, sensors=loaded.sensors, resources=resources, executor=executor_def(),
    )


# The assets whose output is written from the prompt files.
PROMPTED_ASSETS = frozenset({"message_variants"})


def with_prompt_version(assets, config) -> list:
    """The assets, with the message assets' code version set to the campaign's prompt files'
    hash: after a prompt edit the UI shows every segment built before it as stale (code version
    changed) until that segment is backfilled."""
    version = prompt_files_version(config.paths.prompts, config.tones, config.company.name, config.goal)
    return [
        asset.map_asset_specs(lambda spec: spec.replace_attributes(code_version=version)
                              if spec.key.to_user_string() in PROMPTED_ASSETS else spec)
        if isinstance(asset, dg.AssetsDefinition) and any(k.to_user_string() in PROMPTED_ASSETS for k in asset.keys) else asset
        for asset in assets
    ]


def campaign_job(job_name: str, campaign_path: str) -> dg.JobDefinition:
    """A job of the campaign at `campaign_path`: how a step process of the multiprocess executor
    rebuilds the job the CLI launched (see `cli.commands.Session`)."""
    return campaign_definitions(campaign_path).resolve_job_def(job_name)


def open_instance() -> dg.DagsterInstance:
    """The Dagster instance of `DAGSTER_HOME` (the CLI points it inside CPO_HOME), where runs show in the UI."""
    return dg.DagsterInstance.get()


def run_job(
    defs: dg.Definitions,
    job_name: str,
    campaign_path: Path,
    *,
    instance: dg.DagsterInstance,
    run_config: dict,
    tags: Mapping[str, str] | None = None,
    partition_key: str | None = None,
):
    """Run one job of `defs` in `instance` with the configured executor (`CPO_EXECUTOR`).

    In-process (the default) runs the steps in this process. Multiprocess launches the same
    job as a reconstructable job (each step process rebuilds it from the campaign file with
    `campaign_job`), so the steps run in their own processes; the run, its events and checks are
    the same.
    """
    if executor_name() == "in_process":
        return defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, run_config=run_config, tags=dict(tags or {}), partition_key=partition_key, raise_on_error=False
        )
    job = dg.build_reconstructable_job(
        "personalization_assets.definitions", "campaign_job", reconstructable_args=(job_name, str(campaign_path))
    )
    run_tags = {**(tags or {}), **({"dagster/partition": partition_key} if partition_key else {})}
    with dg.execute_job(job, instance=instance, run_config=run_config, tags=run_tags, raise_on_error=False) as result:
        return result


@dg.definitions
def defs() -> dg.Definitions:
    return code_location()
