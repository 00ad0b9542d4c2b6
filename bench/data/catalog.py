"""The item catalog: which (title, year) pairs exist, with optional popularity counts.

Catalogs load from `.pkl` (through a restricted unpickler: pickles from users are untrusted), `.csv` (columns
`title,year`, optional `mentions`) or `.jsonl` (objects with `title` and `year`, or `[title, year]` pairs).
Malformed entries (a year like 201, an empty title) are dropped and reported in `Catalog.dropped`.
"""

import csv
import io
import pickle
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

from bench.data.jsonl import iter_jsonl
from bench.data.records import Item
from bench.errors import DataError
from bench.evaluation.parsing import MAX_YEAR, MIN_YEAR


@lru_cache(maxsize=1 << 16)
def normalize_title(title: str) -> str:
    """Case-folded, NFKC, whitespace-collapsed title: the key the `standard` protocol compares (memoised: the same
    titles come back in every model output)."""
    if title.isascii():
        return " ".join(title.lower().split())
    return " ".join(unicodedata.normalize("NFKC", title).casefold().split())


@dataclass(frozen=True)
class Catalog:
    """An ordered list of unique items with hash indexes for both evaluation protocols."""

    items: tuple[Item, ...]
    mentions: tuple[int, ...] = ()
    dropped: tuple[str, ...] = field(default=())
    source: str = ""

    @cached_property
    def exact_index(self) -> frozenset[Item]:
        """Exact (title, year) pairs: catalog membership in the `reference` protocol."""
        return frozenset(self.items)

    @cached_property
    def normalized_index(self) -> frozenset[tuple[str, int]]:
        """(normalized title, exact year): catalog membership in the `standard` protocol."""
        return frozenset((normalize_title(t), y) for t, y in self.items)

    def popularity(self, item: Item) -> int:
        """Mention count of an item (0 when the catalog carries no counts)."""
        if not self.mentions:
            return 0
        return self._mention_index.get(item, 0)

    @cached_property
    def _mention_index(self) -> dict[Item, int]:
        return dict(zip(self.items, self.mentions))

    def __len__(self) -> int:
        return len(self.items)


def catalog_from_entries(entries: Iterable[tuple[object, object, object]], source: str) -> Catalog:
    """Validate (title, year, mentions) triples; duplicates keep the first, malformed ones are dropped and reported."""
    items: list[Item] = []
    mentions: list[int] = []
    dropped: list[str] = []
    seen: set[Item] = set()
    for position, (title, year, count) in enumerate(entries, start=1):
        problem = _entry_problem(title, year)
        if problem:
            dropped.append(f"{source}: entry {position} {title!r}, {year!r}: {problem}")
            continue
        item = (" ".join(str(title).split()), int(str(year)))
        if item in seen:
            continue
        seen.add(item)
        items.append(item)
        mentions.append(int(count) if isinstance(count, int) or str(count).isdigit() else 0)
    has_counts = any(mentions)
    return Catalog(tuple(items), tuple(mentions) if has_counts else (), tuple(dropped), source)


def _entry_problem(title: object, year: object) -> str:
    if not isinstance(title, str) or not title.strip():
        return "title is not a non-empty string"
    if isinstance(year, bool) or not (isinstance(year, int) or (isinstance(year, str) and year.strip().isdigit())):
        return "year is not an integer"
    value = int(str(year).strip())
    if not MIN_YEAR <= value <= MAX_YEAR:
        return f"year {value} is outside {MIN_YEAR}-{MAX_YEAR}"
    return ""


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only lists, tuples, sets, str and int; any global or persistent reference is refused, never run."""

    _ALLOWED = {("builtins", "set"), ("builtins", "frozenset"), ("__builtin__", "set")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return set if name == "set" else frozenset
        raise pickle.UnpicklingError(f"refused to load '{module}.{name}' (only lists, tuples, sets, str and int)")

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("refused a persistent reference")


def _check_plain(value: object, path: str = "root") -> None:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return
    if isinstance(value, (list, tuple, set, frozenset)):
        for index, element in enumerate(value):
            _check_plain(element, f"{path}[{index}]")
        return
    raise pickle.UnpicklingError(f"refused a value of type {type(value).__name__} at {path}")


def safe_unpickle(data: bytes, source: str) -> object:
    """Load an untrusted pickle of plain lists/tuples/sets/str/int, or raise DataError naming `source`."""
    try:
        value = _RestrictedUnpickler(io.BytesIO(data)).load()
        _check_plain(value)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DataError(f"{source}: not a plain catalog pickle, refused without running it ({exc})") from None
    return value


def _pairs_from_pickle(path: Path) -> list[tuple[object, object, object]]:
    value = safe_unpickle(path.read_bytes(), str(path))
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise DataError(f"{path}: expected a list of (title, year) pairs, got {type(value).__name__}")
    entries = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
    triples: list[tuple[object, object, object]] = []
    for entry in entries:
        if isinstance(entry, (list, tuple)) and len(entry) == 2:
            triples.append((entry[0], entry[1], 0))
        else:
            triples.append((repr(entry), None, 0))
    return triples


def _pairs_from_csv(path: Path) -> list[tuple[object, object, object]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"title", "year"} <= set(reader.fieldnames):
            raise DataError(f"{path}: a catalog CSV needs the columns title,year (got {reader.fieldnames})")
        return [(row["title"], row["year"], row.get("mentions") or 0) for row in reader]


def _pairs_from_jsonl(path: Path) -> list[tuple[object, object, object]]:
    triples: list[tuple[object, object, object]] = []
    for where, _, value in iter_jsonl(path):
        if isinstance(value, dict):
            triples.append((value.get("title"), value.get("year"), value.get("mentions", 0)))
        elif isinstance(value, list) and len(value) == 2:
            triples.append((value[0], value[1], 0))
        else:
            raise DataError(f"{where}: expected {{title, year}} or [title, year]")
    return triples


def load_catalog(path: str | Path) -> Catalog:
    """Load a catalog file by extension (.pkl, .csv, .jsonl); raises DataError naming the file on bad input."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: catalog file not found")
    loaders = {".pkl": _pairs_from_pickle, ".pickle": _pairs_from_pickle, ".csv": _pairs_from_csv,
               ".jsonl": _pairs_from_jsonl}
    loader = loaders.get(path.suffix.lower())
    if loader is None:
        raise DataError(f"{path}: unknown catalog format '{path.suffix}' (use .pkl, .csv or .jsonl)")
    return catalog_from_entries(loader(path), str(path))


def write_catalog_csv(catalog: Catalog, path: Path) -> None:
    """Write `title,year[,mentions]` rows (the format of shipped catalogs)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["title", "year", "mentions"] if catalog.mentions else ["title", "year"])
        for index, (title, year) in enumerate(catalog.items):
            row: list[object] = [title, year]
            if catalog.mentions:
                row.append(catalog.mentions[index])
            writer.writerow(row)
