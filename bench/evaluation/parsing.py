"""The one parser: raw model text -> recommended items (DESIGN.md, evaluation protocol).

Model output is untrusted text, so nothing here raises: a line either reads `<title> (<year>)`, possibly wrapped in
numbering, bullets, markdown or quotes, or it is an unparsable line. Ranks are non-blank lines, so the k-th rank of
the reward and the k-th line of text are the same thing (see `algorithms.rank_grpo.segment_ranks`).

Two readings of a line, one per evaluation protocol:
- `standard` (`parse_line`): strict. The line must end with the year (only closing wrappers and punctuation may
  follow); quotes and emphasis are removed only where they wrap the title (`"Heat" (1995)`, `**Heat** (1995)`,
  `**Heat (1995)**`), so that every catalog title round-trips from `Title (Year)`, including `'71`, `61*`,
  `Gone Fishin'` and `Everything You Always Wanted to Know About Sex*`.
- `reference` (`parse_line_reference`): the published evaluation's `process_rec_raw` (github.com/yaochenzhu/
  Rank-GRPO libs/utils.py:54-83, called from evaluate/eval_grpo_test.py:101), mirrored line for line: text after
  the year is ignored (`re.match(r"(.+?)\\s+\\((\\d{4})\\)", line)`, utils.py:62,67), `*_-#` are stripped from both
  ends of line and title and parenthesised groups are deleted from the title (utils.py:17-46,70-73, so `61*` reads
  `61`), quotes are removed when they wrap it (utils.py:48-52), lines split on `\\n` only (utils.py:56,59), and an
  unparsable line is dropped (it yields no item, utils.py:68; here None, which the evaluator drops before ranking).
"""

import re
import unicodedata

from bench.data.records import Item

MIN_YEAR = 1870
MAX_YEAR = 2100
MAX_LINE_CHARS = 400
"""Longer lines are chatter, not a title: the cap also bounds the regex's work per line (standard protocol)."""
MAX_REFERENCE_LINE_CHARS = 4000
"""The published parser has no cap; this one only bounds the quadratic worst case of its lazy regex."""

_JUNK = "*_`\"'“”‘’«»„"
_LINE = re.compile(
    rf"""\s*
    (?:(?:[-*+•·>–—]++(?=\s)|\#{{1,6}}|\(?\d{{1,3}}[.)\]](?=\s)|\[\d{{1,3}}\]|(?:rank|no\.|number)\s*+\d{{1,3}}\s*+[.):-]?)\s*+)*+
    (?P<title>.*?)
    \s*\(\s*(?P<year>\d{{4}})\s*\)
    (?P<tail>[\s{_JUNK}.,;:!]*)""",
    re.IGNORECASE | re.VERBOSE,
)
_WRAPPERS = (("**", "**"), ("__", "__"), ("*", "*"), ("_", "_"), ("`", "`"), ('"', '"'), ("'", "'"), ("“", "”"),
             ("‘", "’"), ("«", "»"), ("„", "“"), ("„", "”"), ("”", "”"))
"""(opening, closing) marks that wrap a title; the longer emphasis marks first, so `**x**` is not read as `*x*`."""


_BOLD = ("**", "__")
"""Markdown bold marks: no title begins or ends with one, so they are removed even when unpaired."""


def _unwrap(title: str, tail: str) -> str:
    """Remove wrappers around the title: a mark that opens the title and closes it (`"Heat"`), or that opens it
    and closes after the year (`**Heat (1995)**`, the closing mark is in `tail`), and bold marks on either end. A
    single quote or asterisk on one side only belongs to the title (`'71`, `61*`, `Gone Fishin'`)."""
    changed = True
    while changed and title:
        changed = False
        for opening, closing in _WRAPPERS:
            if not title.startswith(opening):
                continue
            if len(title) > len(opening) + len(closing) and title.endswith(closing):
                title, changed = title[len(opening):-len(closing)].strip(), True
                break
            if closing in tail or opening in _BOLD:
                title, tail, changed = title[len(opening):].strip(), tail.replace(closing, "", 1), True
                break
        if not changed and title.endswith(_BOLD):
            title, changed = title[:-2].strip(), True
    return title


def parse_line(line: str) -> Item | None:
    """One line -> (title, year), or None when it does not read `<title> (<year>)` (standard protocol).

    Leading numbering ("1.", "(2)", "[3]", "Rank 4:"), bullets and headings are stripped, and quotes or markdown
    emphasis that wrap the title (see `_unwrap`). Nested parentheses stay in the title ("Birdman (or The Unexpected
    Virtue of Ignorance) (2014)"); the year is the parenthesised four-digit number that ends the line.
    """
    if len(line) > MAX_LINE_CHARS:
        return None
    text = line if line.isascii() else unicodedata.normalize("NFC", line)
    match = _LINE.fullmatch(text)
    if match is None:
        return None
    title = _unwrap(match.group("title").strip(), match.group("tail"))
    year = int(match.group("year"))
    if "  " in title or "\t" in title:
        title = " ".join(title.split())
    if not title or not MIN_YEAR <= year <= MAX_YEAR:
        return None
    return title, year


_REF_PARENTHESES = re.compile(r"\([^()]*\)")
_REF_SPACE = re.compile(r"\s+")
_REF_FORMAT_START = re.compile(r"^([\*\_\-\#]+)")
_REF_FORMAT_END = re.compile(r"([\*\_\-\#]+)$")
_REF_FORMAT_NUMBERING = re.compile(r"^(?:[\*\_\-\#]+\s+|(?:\d+\s*[\.\)、\-\—\–]\s+))")
_REF_HEADING = re.compile(r"^#+\s*")
_REF_ITEM = re.compile(r"(.+?)\s+\((\d{4})\)")


def _ref_space(text: str) -> str:
    """utils.py:21-23 `del_space`."""
    return _REF_SPACE.sub(" ", text.strip()).strip()


def _ref_format(text: str) -> str:
    """utils.py:29-46 `del_format`: strip `*_-#` runs and numbering from both ends until nothing changes."""
    text = text.strip()
    while True:
        new_text = _REF_FORMAT_START.sub("", text).strip()
        new_text = _REF_FORMAT_END.sub("", new_text).strip()
        new_text = _REF_FORMAT_NUMBERING.sub("", new_text).strip()
        new_text = _REF_HEADING.sub("", new_text)
        if new_text == text:
            return text
        text = new_text


def _ref_quotes(text: str) -> str:
    """utils.py:48-52 `remove_quotes`: one pair of straight quotes wrapping the text."""
    if (text.startswith('"') and text.endswith('"')) or (text.startswith("'") and text.endswith("'")):
        return text[1:-1]
    return text


def _ref_clean_title(name: str) -> str:
    """utils.py:70-73: quotes, format and parenthesised groups removed from the title until it is stable."""
    cleaned = _ref_quotes(_ref_format(_ref_space(_REF_PARENTHESES.sub("", name.strip()))))
    while cleaned != name:
        name = cleaned
        cleaned = _ref_quotes(_ref_format(_ref_space(_REF_PARENTHESES.sub("", name.strip()))))
    return name


def parse_line_reference(line: str) -> Item | None:
    """One line as the published evaluation reads it (utils.py:66-76): cleaned, then `(.+?)\\s+\\((\\d{4})\\)`
    matched at its start, anything after the year ignored; None when that does not match."""
    if len(line) > MAX_REFERENCE_LINE_CHARS:
        return None
    match = _REF_ITEM.match(_ref_quotes(_ref_format(_ref_space(line))))
    if match is None:
        return None
    return _ref_clean_title(match.group(1)), int(match.group(2))


def split_lines(text: object) -> list[str]:
    """Non-blank lines of `text` (any newline convention); anything that is not a string has none."""
    if not isinstance(text, str):
        return []
    return [line for line in text.splitlines() if line.strip()]


def parse_lines(text: object, protocol: str = "standard") -> list[Item | None]:
    """One entry per non-blank line, in order: the parsed item or None. Positions are ranks (1-based k = index+1).

    `protocol="reference"` reads lines as the published evaluation does: split on `\\n` only (utils.py:56-59) and
    `parse_line_reference`.
    """
    if protocol == "reference":
        if not isinstance(text, str):
            return []
        return [parse_line_reference(line.strip()) for line in text.split("\n") if line.strip()]
    return [parse_line(line) for line in split_lines(text)]


def parse_recommendations(text: object, protocol: str = "standard") -> list[Item]:
    """The items of `text` in order, unparsable lines dropped."""
    return [item for item in parse_lines(text, protocol) if item is not None]


def format_item(item: Item) -> str:
    """The canonical line for an item: `Title (Year)`."""
    return f"{item[0]} ({item[1]})"
