"""The report as data: what the report reads (`ReportInputs`) and what it says (`Report`, sections
of blocks), shared by the HTML and PDF renderers so both show the same content. Pure logic: no
Dagster import."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import pandas as pd

from personalization_assets.audience.segmentation import SegmentCatalog
from personalization_assets.campaign.config import CampaignConfig
from personalization_assets.explain.models import DEFAULT_SAMPLE_SIZE, DEFAULT_SEED
from personalization_assets.report.charts import Figure

BOLD = re.compile(r"\*\*(.+?)\*\*")
# Shown under the title of every report whose engagement was simulated, in both formats.
SIMULATED_BANNER = ("**Simulated engagement.** The opens, clicks and conversions in this report were simulated from the "
                    "campaign's configured ground truth: they demonstrate the pipeline, not real customer behaviour.")


def bold_runs(text: str) -> list[tuple[str, bool]]:
    """`**bold**` markup as (text, is bold) runs, in order, without empty runs."""
    # re.split with one group alternates plain text (even positions) and the bold group (odd).
    return [(part, index % 2 == 1) for index, part in enumerate(BOLD.split(text)) if part]


@dataclass
class Para:
    text: str  # `**bold**` is the only markup
    style: str = ""  # "", "lead", "note", "good", "bad", "banner"


@dataclass
class Bullets:
    items: list[str]  # `**bold**` markup, as in Para


@dataclass
class Subhead:
    text: str


@dataclass
class Pre:
    text: str


@dataclass
class Chart:
    figure: Figure


@dataclass
class Table:
    key: str
    columns: list[str]
    rows: list[list[str]]
    left: tuple[int, ...] = (0,)  # left-aligned column positions
    col_keys: list[str] | None = None  # machine names of the columns (data-col in HTML)
    row_attrs: list[dict[str, str]] | None = None  # per-row data attributes in HTML
    fills: list[list[str | None]] | None = None  # per-cell background colours
    caption: str | None = None


Block = Para | Bullets | Subhead | Pre | Chart | Table


@dataclass
class Section:
    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    title: str
    subtitle: str
    simulated: bool
    headline: str
    sections: list[Section]
    markdown: str


@dataclass
class ReportInputs:
    """Everything the report reads: the wave's warehouse tables and where they came from."""

    config: CampaignConfig
    catalog: SegmentCatalog
    wave: str
    results: pd.DataFrame
    assignments: pd.DataFrame
    verdicts: pd.DataFrame
    variants: pd.DataFrame
    customer_segments: pd.DataFrame | None = None
    engagement: pd.DataFrame | None = None
    exploration: pd.DataFrame | None = None
    corpus: pd.DataFrame | None = None
    # Every screened document with its decision and reasons (`screened_corpus`): the quarantined are listed.
    screened_corpus: pd.DataFrame | None = None
    # What may be sent, per (segment, variant), and who approved it (`safety/approval.effective_decisions`).
    approvals: pd.DataFrame | None = None
    # The wave's arm weights per segment (`arm_allocation`); needed with `allocation: thompson`.
    allocation: pd.DataFrame | None = None
    freshness: list[tuple[str, str]] | None = None
    code_version: str | None = None
    generated_at: dt.datetime | None = None
    sample_size: int = DEFAULT_SAMPLE_SIZE
    seed: int = DEFAULT_SEED
