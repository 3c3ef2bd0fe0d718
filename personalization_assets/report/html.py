"""The report as a self-contained HTML page (inline CSS and SVG, no external reference), rendered
from the block model through the Jinja template `templates/report.html.j2`, which escapes every
value itself. Pure logic: no Dagster import."""

from __future__ import annotations

from pathlib import Path

import jinja2
from markupsafe import Markup

from personalization_assets.report.charts import Figure
from personalization_assets.report.model import (
    SIMULATED_BANNER,
    Block,
    Bullets,
    Chart,
    Para,
    Pre,
    Report,
    Subhead,
    Table,
    bold_runs,
)

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "report.html.j2"
BLOCK_KINDS = {Para: "para", Bullets: "bullets", Subhead: "subhead", Pre: "pre", Chart: "chart", Table: "table"}


def block_kind(block: Block) -> str:
    """Which of the template's renderings a block takes."""
    try:
        return BLOCK_KINDS[type(block)]
    except KeyError:
        raise TypeError(f"unknown report block {block!r}") from None


def chart_svg(figure: Figure) -> Markup:
    # charts.py writes the SVG from numbers and escapes every text it puts in, so the markup is trusted.
    return Markup(figure.to_svg())


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the render instead of printing nothing
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(bold_runs=bold_runs, block_kind=block_kind, svg=chart_svg)
    return environment


ENVIRONMENT = _environment()


def render_html(report: Report) -> str:
    banner = Para(SIMULATED_BANNER, "banner") if report.simulated else None
    return ENVIRONMENT.get_template(TEMPLATE).render(report=report, banner=banner)
