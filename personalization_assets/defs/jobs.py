"""The campaign's jobs, their executor, and the weekly schedule of the wave job.

Executor (`executor_def`, set on the code location's Definitions when they load, so a step process
reads the same environment): in-process by default, for every job (CLI, UI, schedule);
`CPO_EXECUTOR=multiprocess` runs each step in its own process (`CPO_MAX_CONCURRENT` at a time,
default one per CPU); `CPO_EXECUTOR=celery` submits each step to the Celery broker of
`CPO_CELERY_BROKER` (results on `CPO_CELERY_BACKEND`; both required, with the shared warehouse's
`CPO_WAREHOUSE_URL`), for the workers that
`dagster-celery worker start` runs, on this machine or others (docs/deployment.md). The broker
URLs are read from the environment where they are used (`EnvVar`-style config), never stored in a run.
See docs/performance.md for when each helps.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from personalization_assets.campaign.errors import ConfigError
from personalization_assets.defs.partitions import (
    CONTENT_GROUP,
    DELIVERY_GROUP,
    ROLLOUT_GROUP,
    WAVE_GROUP,
)

CONTENT_JOB = "campaign_content"
WAVE_JOB = "campaign_wave"
ROLLOUT_JOB = "campaign_rollout"
DELIVERY_JOB = "campaign_delivery"
# What an engagement file re-runs (the engagement sensor): the wave's analysis, and the rollout after it.
ANALYSIS_JOB = "campaign_wave_and_rollout"
EXECUTOR_ENV = "CPO_EXECUTOR"
MAX_CONCURRENT_ENV = "CPO_MAX_CONCURRENT"
CELERY_BROKER_ENV = "CPO_CELERY_BROKER"
CELERY_BACKEND_ENV = "CPO_CELERY_BACKEND"
EXECUTORS = ("in_process", "multiprocess", "celery")


def executor_name(environ: Mapping[str, str] = os.environ) -> str:
    name = environ.get(EXECUTOR_ENV, "").strip() or "in_process"
    if name not in EXECUTORS:
        raise ConfigError(EXECUTOR_ENV, f"must be one of {list(EXECUTORS)}, got {name!r}")
    return name


def executor_def(environ: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    """The jobs' executor: in-process (the default), multiprocess or celery (`CPO_EXECUTOR`)."""
    name = executor_name(environ)
    if name == "in_process":
        return dg.in_process_executor
    if name == "celery":
        from dagster_celery import celery_executor

        from personalization_assets.warehouse import WAREHOUSE_URL_ENV

        for variable, what in ((CELERY_BROKER_ENV, "the broker's URL, e.g. redis://10.0.0.5:6379/0"),
                               (CELERY_BACKEND_ENV, "the results backend's URL (the broker's, for Redis)"),
                               # Each worker builds its own resources: without a shared warehouse every one would write its own DuckDB file.
                               (WAREHOUSE_URL_ENV, "the shared PostgreSQL warehouse, which every worker writes (docs/deployment.md)")):
            if not environ.get(variable, "").strip():
                raise ConfigError(variable, f"CPO_EXECUTOR=celery needs {what}")
        return celery_executor.configured({"broker": {"env": CELERY_BROKER_ENV}, "backend": {"env": CELERY_BACKEND_ENV}})
    raw = environ.get(MAX_CONCURRENT_ENV, "").strip() or "0"
    if not raw.isdigit():
        raise ConfigError(MAX_CONCURRENT_ENV, f"must be a whole number (0: one step per CPU), got {raw!r}")
    return dg.multiprocess_executor.configured({"max_concurrent": int(raw)})


campaign_content = dg.define_asset_job(
    CONTENT_JOB,
    selection=dg.AssetSelection.groups(CONTENT_GROUP),
    description="Retrieve, generate and screen the variants of every (or the selected) segment.",
)
campaign_wave = dg.define_asset_job(
    WAVE_JOB,
    selection=dg.AssetSelection.groups(WAVE_GROUP),
    description="Segment, assign, render, take engagement, analyse and report one campaign wave.",
)
campaign_rollout = dg.define_asset_job(
    ROLLOUT_JOB,
    selection=dg.AssetSelection.groups(ROLLOUT_GROUP),
    description="After a test on a share (rollout.test_share): value the policies, then send everyone else and measure it.",
)
campaign_wave_and_rollout = dg.define_asset_job(
    ANALYSIS_JOB,
    selection=dg.AssetSelection.groups(WAVE_GROUP, ROLLOUT_GROUP),
    description="The wave and its rollout: what the engagement sensor re-runs when a wave's ESP export arrives.",
)
campaign_delivery = dg.define_asset_job(
    DELIVERY_JOB,
    selection=dg.AssetSelection.groups(DELIVERY_GROUP),
    description="Build a wave's MIME messages and deliver them (SMTP, the outbox, or an ESP bundle), recorded in the delivery ledger.",
)
weekly_campaign_wave = dg.build_schedule_from_partitioned_job(campaign_wave, name="weekly_campaign_wave")
