"""Reading JSONL files line by line with errors that name the file and the line."""

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.errors import DataError


def iter_jsonl(path: Path) -> Iterator[tuple[str, int, Any]]:
    """(where, line number, value) for each non-blank line of a .jsonl or .jsonl.gz file; `where` reads
    "<file>: line <n>". Invalid JSON raises DataError naming the file and line."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {line_number}"
            try:
                yield where, line_number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: invalid JSON ({exc.msg})") from None
