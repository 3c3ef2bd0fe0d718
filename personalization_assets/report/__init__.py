"""The wave report: what a stakeholder reads, and why the numbers are what they are.

`build_report` turns one wave's warehouse tables (`ReportInputs`) into a `Report`: sections of
paragraphs, tables and charts, every number computed from the tables passed in. `render_html` and
`render_pdf` draw the same `Report` as a self-contained page and as a PDF; `write_report` writes
both and returns the Markdown headline for Dagster's UI. Pure logic: no Dagster import.

Modules, each importing only those before it: formatting, charts, model, provenance, tables,
verdicts, sections, explainability, build, html, pdf, writer.
"""

from personalization_assets.report.build import build_report
from personalization_assets.report.html import render_html
from personalization_assets.report.model import Report, ReportInputs
from personalization_assets.report.pdf import render_pdf
from personalization_assets.report.provenance import code_version, data_freshness
from personalization_assets.report.tables import (
    cost_summary,
    design_table,
    results_display,
)
from personalization_assets.report.writer import (
    REPORT_HTML,
    REPORT_PDF,
    ReportFiles,
    write_report,
)

__all__ = [
    "REPORT_HTML",
    "REPORT_PDF",
    "Report",
    "ReportFiles",
    "ReportInputs",
    "build_report",
    "code_version",
    "cost_summary",
    "data_freshness",
    "design_table",
    "render_html",
    "render_pdf",
    "results_display",
    "write_report",
]
