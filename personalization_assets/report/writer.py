"""`write_report`: one wave's report written as `report.html` and `report.pdf`, with the Markdown
summary for the asset's metadata. Pure logic: no Dagster import."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from personalization_assets.report.build import build_report
from personalization_assets.report.html import render_html
from personalization_assets.report.model import Report, ReportInputs

# Imported with the module, not inside write_report: fpdf keeps the exception of its optional
# `cryptography` import, and with it the stack that first imported fpdf. Imported inside a
# Dagster step, that stack would hold the step's inputs (a million rows) until the process exits.
from personalization_assets.report.pdf import render_pdf

REPORT_HTML = "report.html"
REPORT_PDF = "report.pdf"


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    pdf: Path
    markdown: str
    report: Report


def write_report(out_dir: Path, inputs: ReportInputs) -> ReportFiles:
    """Write `report.html` and `report.pdf` into `out_dir`; returns their paths and the Markdown
    summary (with the paths) for the asset's metadata."""
    report = build_report(inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, pdf_path = out_dir / REPORT_HTML, out_dir / REPORT_PDF
    html_path.write_text(render_html(report), encoding="utf-8")
    render_pdf(report, pdf_path)
    markdown = report.markdown + f"\n- report: `{html_path}` (PDF: `{pdf_path}`)"
    return ReportFiles(html_path, pdf_path, markdown, report)
