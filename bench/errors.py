"""Error types the CLI turns into one clear line (no traceback)."""

import difflib


class BenchError(Exception):
    """A user-facing error: bad input, missing weights, unknown names. The message is the whole story."""


class DataError(BenchError):
    """Bad data: the message names the file and the record (line) and what is wrong."""


class UnknownNameError(BenchError):
    """A registry lookup failed; the message lists the known names and a did-you-mean suggestion."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        super().__init__(f"Unknown {kind} '{name}'.{hint} Known: {', '.join(sorted(known))}.")
