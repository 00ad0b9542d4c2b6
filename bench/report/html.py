"""The report's pages: `report.md` (tables inline, figures linked) and a self-contained `report.html` (tables
inline, figures embedded as base64 PNG), both rendered from the same list of sections."""

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from bench.report.tables import TextTable

Block = str | TextTable | Path
"""A paragraph, a table, or a PNG figure."""

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:110em}table{border-collapse:collapse;margin:1em 0;"
         "font-size:85%}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}th:first-child,"
         "td:first-child{text-align:left}img{max-width:100%}")


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
            elif isinstance(block, Path):
                relative = block.relative_to(root).as_posix()
                parts.append(f"![{block.stem}]({relative})\n")
            else:
                parts.append(f"{block}\n")
    return "\n".join(parts)


def html_page(title: str, sections: list[Section]) -> str:
    """One HTML file with no outside references."""
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"]
    for section in sections:
        parts.append(f"<h{section.level}>{html.escape(section.title)}</h{section.level}>\n")
        for block in section.blocks:
            if isinstance(block, TextTable):
                parts.append(block.to_html())
            elif isinstance(block, Path):
                encoded = base64.b64encode(block.read_bytes()).decode("ascii")
                parts.append(f"<img alt=\"{html.escape(block.stem)}\" src=\"data:image/png;base64,{encoded}\">\n")
            else:
                parts.append(f"<p>{html.escape(block)}</p>\n")
    parts.append("</body></html>\n")
    return "".join(parts)
