"""The report's pages: `report.md` (tables inline, figures linked) and a self-contained `report.html` (tables
inline, figures embedded as base64 PNG, each with its caption), both rendered from the same list of sections."""

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from bench.report.tables import TextTable


@dataclass(frozen=True)
class Figure:
    """A PNG figure and the caption a reader needs to read it."""

    path: Path
    caption: str


Block = str | TextTable | Figure
"""A paragraph, a table, or a figure."""

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:110em;line-height:1.4}table{border-collapse:collapse;"
         "margin:1em 0;font-size:85%}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}"
         "td{white-space:nowrap}th{background:#f3f3f3}th:first-child,td:first-child{text-align:left}"
         "img{max-width:100%}figure{margin:1em 0}figcaption{font-size:85%;color:#444;max-width:60em}"
         "p{max-width:75em}h3{margin-top:1.6em}")


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]
    level: int = 2


def markdown_page(title: str, sections: list[Section], root: Path) -> str:
    """Markdown with figures linked relative to `root` (the report folder)."""
    parts = [f"# {title}\n"]
    for section in sections:
        parts.append(f"{'#' * section.level} {section.title}\n")
        for block in section.blocks:
            if isinstance(block, TextTable):
                parts.append(block.to_markdown())
            elif isinstance(block, Figure):
                relative = block.path.relative_to(root).as_posix()
                parts.append(f"![{block.path.stem}]({relative})\n\n*{block.caption}*\n")
            else:
                parts.append(f"{block}\n")
    return "\n".join(parts)


def html_page(title: str, sections: list[Section]) -> str:
    """One HTML file with no outside references."""
    parts = [(f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
              f"<style>{STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n")]
    for section in sections:
        parts.append(f"<h{section.level}>{html.escape(section.title)}</h{section.level}>\n")
        for block in section.blocks:
            if isinstance(block, TextTable):
                parts.append(block.to_html())
            elif isinstance(block, Figure):
                encoded = base64.b64encode(block.path.read_bytes()).decode("ascii")
                parts.append(f"<figure><img alt=\"{html.escape(block.path.stem)}\" src=\"data:image/png;base64,"
                             f"{encoded}\"><figcaption>{html.escape(block.caption)}</figcaption></figure>\n")
            else:
                parts.append(f"<p>{html.escape(block)}</p>\n")
    parts.append("</body></html>\n")
    return "".join(parts)
