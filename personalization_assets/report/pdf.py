"""The wave report as a PDF, drawn with fpdf2 (pure Python) from the same `Report` as the HTML.

Charts are drawn from the same primitives as their SVG, so both formats show the same picture.
The PDF uses the standard Helvetica and Courier fonts (nothing to embed or fetch); they cover
Latin-1 only, so the few other characters the report uses are spelled out (≥ becomes >=).
"""

from __future__ import annotations

import re
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace

from personalization_assets.report.charts import (
    Circle,
    Figure,
    Line,
    Polygon,
    Rect,
    Text,
)
from personalization_assets.report.model import (
    SIMULATED_BANNER,
    Bullets,
    Chart,
    Para,
    Pre,
    Report,
    Subhead,
    Table,
    bold_runs,
)

FONT = "Helvetica"
MONO = "Courier"
MARGIN = 12.0
INK = (31, 41, 51)
MUTED = (82, 96, 109)
RULE = (217, 226, 236)
HEAD_FILL = (240, 244, 248)
STYLE_COLOURS = {"good": (12, 107, 88), "bad": (171, 9, 30), "banner": (240, 180, 41)}
PT_PER_MM = 72 / 25.4
REPLACEMENTS = {
    "–": "-", "—": "-", "−": "-", "≥": ">=", "≤": "<=", "→": "->", "…": "...", "‘": "'", "’": "'",
    "“": '"', "”": '"', "≈": "~", "σ": "SD", "\u00a0": " ", "\u2009": " ",
}
_REPLACE = re.compile("|".join(map(re.escape, REPLACEMENTS)))


def latin1(text: str) -> str:
    """Text the core fonts can show: known symbols spelled out, anything else as '?'."""
    text = _REPLACE.sub(lambda m: REPLACEMENTS[m.group(0)], str(text))
    return text.encode("latin-1", "replace").decode("latin-1")


def _rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


class _PDF(FPDF):
    report_title = ""

    def footer(self) -> None:
        self.set_y(-9)
        self.set_font(FONT, "", 7)
        self.set_text_color(*MUTED)
        self.cell(0, 4, latin1(self.report_title), align="L")
        self.set_x(self.l_margin)
        self.cell(0, 4, f"page {self.page_no()} of {{nb}}", align="R")


def _width(pdf: FPDF) -> float:
    return pdf.w - pdf.l_margin - pdf.r_margin


def _ensure_room(pdf: FPDF, height: float) -> None:
    if pdf.get_y() + height > pdf.h - pdf.b_margin:
        pdf.add_page()


def _rich(pdf: FPDF, text: str, size: float, line_height: float, colour=INK) -> None:
    """Wrapped text with `**bold**` runs, from the current position."""
    pdf.set_text_color(*colour)
    for part, bold in bold_runs(text):
        pdf.set_font(FONT, "B" if bold else "", size)
        pdf.write(line_height, latin1(part))
    pdf.ln(line_height)


def _para(pdf: FPDF, block: Para) -> None:
    size = {"note": 7.5, "lead": 10.5}.get(block.style, 9)
    colour = MUTED if block.style == "note" else INK
    line_height = size * 0.5
    bar = STYLE_COLOURS.get(block.style)
    _ensure_room(pdf, line_height * 2)
    pdf.ln(1)
    if bar:
        page, top = pdf.page_no(), pdf.get_y()
        pdf.set_left_margin(MARGIN + 3)
        pdf.set_x(MARGIN + 3)
        _rich(pdf, block.text, size, line_height, colour)
        pdf.set_left_margin(MARGIN)
        if pdf.page_no() == page:
            pdf.set_fill_color(*bar)
            pdf.rect(MARGIN, top, 1.2, pdf.get_y() - top, style="F")
    else:
        pdf.set_x(MARGIN)
        _rich(pdf, block.text, size, line_height, colour)
    pdf.ln(1)


def _bullets(pdf: FPDF, block: Bullets) -> None:
    for item in block.items:
        _ensure_room(pdf, 8)
        pdf.set_x(MARGIN)
        pdf.set_font(FONT, "", 8.5)
        pdf.set_text_color(*INK)
        pdf.cell(4, 4.3, latin1("·"))
        pdf.set_left_margin(MARGIN + 4)
        _rich(pdf, item, 8.5, 4.3)
        pdf.set_left_margin(MARGIN)
        pdf.ln(0.6)


def _table(pdf: FPDF, block: Table) -> None:
    size = 6.8 if len(block.columns) > 8 else 7.5
    pdf.set_font(FONT, "", size)
    available = _width(pdf)
    padding = 2.4
    natural = []
    for i, column in enumerate(block.columns):
        pdf.set_font(FONT, "B", size)
        head = max((pdf.get_string_width(latin1(word)) for word in column.split()), default=0)
        pdf.set_font(FONT, "", size)
        cells = max((pdf.get_string_width(latin1(row[i])) for row in block.rows), default=0)
        natural.append(max(head, min(cells, 95.0)) + padding)
    total = sum(natural)
    if total > available:
        # Shrink only the columns wider than an even share; short numbers keep their width.
        share = available / len(natural)
        fixed = sum(w for w in natural if w <= share)
        flexible = [w for w in natural if w > share]
        scale = max((available - fixed) / sum(flexible), 0.2) if flexible else 1.0
        natural = [w if w <= share else w * scale for w in natural]
        total = sum(natural)
    aligns = tuple("LEFT" if i in block.left else "RIGHT" for i in range(len(block.columns)))
    _ensure_room(pdf, 14)
    pdf.set_draw_color(*RULE)
    pdf.set_line_width(0.2)
    pdf.set_text_color(*INK)
    with pdf.table(
        col_widths=tuple(natural),
        width=min(total, available),
        align="LEFT",
        text_align=aligns,
        line_height=size * 0.48,
        headings_style=FontFace(emphasis="BOLD", fill_color=HEAD_FILL, size_pt=size),
        padding=(0.6, 1.0),
        repeat_headings=1,
    ) as table:
        heading = table.row()
        for column in block.columns:
            heading.cell(latin1(column))
        for index, values in enumerate(block.rows):
            row = table.row()
            for i, value in enumerate(values):
                fill = block.fills[index][i] if block.fills else None
                # Every cell gets an explicit fill: fpdf2 otherwise reuses the last fill colour set.
                row.cell(latin1(value), style=FontFace(fill_color=_rgb(fill) if fill else (255, 255, 255)))
    if block.caption:
        pdf.set_font(FONT, "I", 6.8)
        pdf.set_text_color(*MUTED)
        pdf.set_x(MARGIN)
        pdf.multi_cell(min(total, available) if total > 80 else available, 3.3, latin1(block.caption))
    pdf.ln(2.5)


def _pre(pdf: FPDF, block: Pre) -> None:
    pdf.set_font(MONO, "", 6.8)
    pdf.set_text_color(*INK)
    pdf.set_fill_color(248, 250, 252)
    for line in block.text.splitlines():
        _ensure_room(pdf, 3.4)
        pdf.set_x(MARGIN)
        pdf.cell(_width(pdf), 3.2, latin1(line), fill=True, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)


def figure_scale(pdf: FPDF, figure: Figure) -> float:
    """mm per chart pixel: the text width, and never taller than a page."""
    page_height = pdf.h - pdf.t_margin - pdf.b_margin - 16  # room for the heading above it
    return min(_width(pdf) / figure.width, 0.3, page_height / figure.height)


def draw_figure(pdf: FPDF, figure: Figure) -> None:
    """Draw chart primitives at the current position, scaled to fit the text width and a page."""
    scale = figure_scale(pdf, figure)
    height = figure.height * scale
    _ensure_room(pdf, height + 2)
    x0, y0 = MARGIN, pdf.get_y() + 1

    def X(v: float) -> float:
        return x0 + v * scale

    def Y(v: float) -> float:
        return y0 + v * scale

    for item in figure.items:
        if isinstance(item, Line):
            pdf.set_draw_color(*_rgb(item.color))
            pdf.set_line_width(max(item.width * scale, 0.1))
            if item.dash:
                pdf.set_dash_pattern(dash=1.0, gap=0.8)
            pdf.line(X(item.x1), Y(item.y1), X(item.x2), Y(item.y2))
            if item.dash:
                pdf.set_dash_pattern()
        elif isinstance(item, Rect):
            style = ("F" if item.fill else "") + ("D" if item.stroke else "")
            if item.fill:
                pdf.set_fill_color(*_rgb(item.fill))
            if item.stroke:
                pdf.set_draw_color(*_rgb(item.stroke))
                pdf.set_line_width(0.2)
            if style:
                pdf.rect(X(item.x), Y(item.y), item.w * scale, item.h * scale, style=style)
        elif isinstance(item, Circle):
            pdf.set_draw_color(*_rgb(item.stroke))
            pdf.set_line_width(0.35)
            pdf.set_fill_color(*_rgb(item.fill or "#ffffff"))
            r = item.r * scale
            pdf.ellipse(X(item.cx) - r, Y(item.cy) - r, 2 * r, 2 * r, style="DF")
        elif isinstance(item, Polygon):
            pdf.set_fill_color(*_rgb(item.fill))
            pdf.polygon([(X(x), Y(y)) for x, y in item.points], style="F")
        elif isinstance(item, Text):
            size_mm = item.size * scale
            pdf.set_font(FONT, "B" if item.bold else "", size_mm * PT_PER_MM)
            pdf.set_text_color(*_rgb(item.color))
            text = latin1(item.text)
            width = pdf.get_string_width(text)
            x = X(item.x) - {"start": 0.0, "middle": width / 2, "end": width}[item.anchor]
            pdf.text(x, Y(item.y) + size_mm * 0.35, text)
    pdf.set_y(y0 + height + 2)


def render_pdf(report: Report, path: Path) -> Path:
    pdf = _PDF(orientation="L", unit="mm", format="A4")
    pdf.report_title = report.title
    pdf.set_title(latin1(report.title))
    pdf.set_author("Customer Personalization Orchestrator")
    pdf.set_creator("personalization_assets.report.pdf (fpdf2)")
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    pdf.set_auto_page_break(True, margin=13)
    pdf.add_page()
    pdf.set_font(FONT, "B", 16)
    pdf.set_text_color(*INK)
    pdf.multi_cell(_width(pdf), 7, latin1(report.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 8)
    pdf.set_text_color(*MUTED)
    pdf.multi_cell(_width(pdf), 4, latin1(report.subtitle), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    if report.simulated:
        _para(pdf, Para(SIMULATED_BANNER, "banner"))
    for number, section in enumerate(report.sections):
        if number:
            _ensure_room(pdf, 40)
        pdf.ln(3)
        pdf.set_font(FONT, "B", 13)
        pdf.set_text_color(*INK)
        pdf.set_x(MARGIN)
        pdf.cell(_width(pdf), 7, latin1(section.title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_draw_color(*RULE)
        pdf.set_line_width(0.5)
        pdf.line(MARGIN, pdf.get_y(), MARGIN + _width(pdf), pdf.get_y())
        pdf.ln(2)
        for position, block in enumerate(section.blocks):
            following = section.blocks[position + 1] if position + 1 < len(section.blocks) else None
            if isinstance(block, Para):
                _para(pdf, block)
            elif isinstance(block, Bullets):
                _bullets(pdf, block)
            elif isinstance(block, Subhead):
                # Keep a heading with what it introduces: a whole chart, or the start of a table.
                chart = following.figure.height * figure_scale(pdf, following.figure) if isinstance(following, Chart) else 0
                _ensure_room(pdf, max(22, chart + 10))
                pdf.ln(1.5)
                pdf.set_font(FONT, "B", 10)
                pdf.set_text_color(*INK)
                pdf.set_x(MARGIN)
                pdf.multi_cell(_width(pdf), 5, latin1(block.text), new_x="LMARGIN", new_y="NEXT")
            elif isinstance(block, Pre):
                _pre(pdf, block)
            elif isinstance(block, Chart):
                draw_figure(pdf, block.figure)
            elif isinstance(block, Table):
                _table(pdf, block)
            else:  # pragma: no cover - the report model has no other block
                raise TypeError(f"unknown report block {block!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path
