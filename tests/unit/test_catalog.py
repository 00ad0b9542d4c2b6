"""Catalog loading: formats, malformed entries, and untrusted pickles refused without running them."""

import os
import pickle
from pathlib import Path

import pytest

from bench.data.catalog import load_catalog, normalize_title
from bench.errors import DataError


def test_pickle_of_tuples_loads_and_malformed_entries_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "catalog.pkl"
    path.write_bytes(pickle.dumps([("Heat", 1995), ("The Wall", 201), ("Up", 2009), ("Heat", 1995)]))
    catalog = load_catalog(path)
    assert catalog.items == (("Heat", 1995), ("Up", 2009))
    assert len(catalog.dropped) == 1 and "The Wall" in catalog.dropped[0] and "201" in catalog.dropped[0]


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_sets_load_with_every_pickle_protocol(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "catalog.pkl"
    path.write_bytes(pickle.dumps({("Heat", 1995)}, protocol=protocol))
    assert load_catalog(path).items == (("Heat", 1995),)


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_malicious_pickle_is_refused_and_never_executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "catalog.pkl"
    path.write_bytes(pickle.dumps([("Heat", 1995), _Exploit()]))
    with pytest.raises(DataError, match=r"catalog\.pkl.*refused"):
        load_catalog(path)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_pickle_with_other_types_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.pkl"
    path.write_bytes(pickle.dumps([("Heat", 1995.0)]))
    with pytest.raises(DataError, match="float"):
        load_catalog(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="catalog.pkl"):
        load_catalog(path)


def test_csv_and_jsonl_catalogs(tmp_path: Path) -> None:
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("title,year,mentions\nHeat,1995,7\nUp,20x9,1\n", encoding="utf-8")
    catalog = load_catalog(csv_path)
    assert catalog.items == (("Heat", 1995),) and catalog.popularity(("Heat", 1995)) == 7
    assert len(catalog.dropped) == 1
    jsonl_path = tmp_path / "c.jsonl"
    jsonl_path.write_text('{"title": "Heat", "year": 1995}\n["Up", "2009"]\n', encoding="utf-8")
    assert load_catalog(jsonl_path).items == (("Heat", 1995), ("Up", 2009))
    jsonl_path.write_text('{"title": "Heat", "year": 1995}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        load_catalog(jsonl_path)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_catalog(tmp_path / "nope.csv")
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(DataError, match="unknown catalog format"):
        load_catalog(tmp_path / "c.txt")


def test_normalize_title() -> None:
    assert normalize_title("  The   Matrix ") == "the matrix"
    assert normalize_title("AMÉLIE") == normalize_title("amélie")
