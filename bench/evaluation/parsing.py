"""The one parser: raw model text -> recommended items (DESIGN.md, evaluation protocol).

Model output is untrusted text, so nothing here raises: a line either reads `<title> (<year>)`, possibly wrapped in
numbering, bullets, markdown or quotes, or it is an unparsable line. Ranks are non-blank lines, so the k-th rank of
the reward and the k-th line of text are the same thing (see `algorithms.rank_grpo.segment_ranks`).
"""

import re
import unicodedata

from bench.data.records import Item

MIN_YEAR = 1870
MAX_YEAR = 2100
MAX_LINE_CHARS = 400
"""Longer lines are chatter, not a title: the cap also bounds the regex's work per line."""

_JUNK = "*_`\"'“”‘’«»„"
_LINE = re.compile(
    rf"""\s*
    (?:(?:[-*+•·>–—]++|\#{{1,6}}|\(?\d{{1,3}}[.)\]](?=\s)|\[\d{{1,3}}\]|(?:rank|no\.|number)\s*+\d{{1,3}}\s*+[.):-]?)\s*+)*+
    [\s{_JUNK}]*+
    (?P<title>.*?)
    [\s{_JUNK}]*+
    \(\s*(?P<year>\d{{4}})\s*\)
    [\s{_JUNK}.,;:!]*""",
    re.IGNORECASE | re.VERBOSE,
)


def parse_line(line: str) -> Item | None:
    """One line -> (title, year), or None when it does not read `<title> (<year>)`.

    Leading numbering ("1.", "(2)", "[3]", "Rank 4:"), bullets, headings, markdown emphasis and quotes are stripped.
    Nested parentheses stay in the title ("Birdman (or The Unexpected Virtue of Ignorance) (2014)"); the year is the
    parenthesised four-digit number that ends the line.
    """
    if len(line) > MAX_LINE_CHARS:
        return None
    text = line if line.isascii() else unicodedata.normalize("NFC", line)
    match = _LINE.fullmatch(text)
    if match is None:
        return None
    title, year_text = match.group("title", "year")
    year = int(year_text)
    if "  " in title or "\t" in title:
        title = " ".join(title.split())
    if not title or not MIN_YEAR <= year <= MAX_YEAR:
        return None
    return title, year


def split_lines(text: object) -> list[str]:
    """Non-blank lines of `text` (any newline convention); anything that is not a string has none."""
    if not isinstance(text, str):
        return []
    return [line for line in text.splitlines() if line.strip()]


def parse_lines(text: object) -> list[Item | None]:
    """One entry per non-blank line, in order: the parsed item or None. Positions are ranks (1-based k = index+1)."""
    return [parse_line(line) for line in split_lines(text)]


def parse_recommendations(text: object) -> list[Item]:
    """The items of `text` in order, unparsable lines dropped."""
    return [item for item in parse_lines(text) if item is not None]


def format_item(item: Item) -> str:
    """The canonical line for an item: `Title (Year)`."""
    return f"{item[0]} ({item[1]})"
