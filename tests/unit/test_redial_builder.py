"""The ReDial builder on a small hand-made slice of raw data."""

import gzip
import json
from pathlib import Path

import pytest

from bench.data.datasets import load_dataset
from bench.data.redial_builder import build_redial, clean_movie_name
from bench.errors import DataError


def _dialogue(cid: int) -> dict:
    return {
        "conversationId": str(cid), "initiatorWorkerId": 1, "respondentWorkerId": 2,
        "movieMentions": {"10": "Heat  (1995)", "11": "Up (2009)", "12": "No Year Film"},
        "initiatorQuestions": {"10": {"suggested": 0, "seen": 1, "liked": 1}},
        "messages": [
            {"senderWorkerId": 1, "text": "hi, I loved @10"},
            {"senderWorkerId": 2, "text": "try @11 or @10"},
            {"senderWorkerId": 2, "text": "or @12"},
            {"senderWorkerId": 1, "text": "thanks"},
            {"senderWorkerId": 2, "text": "@11 again"},
        ],
    }


def _source(tmp_path: Path, n_dialogues: int) -> Path:
    source = tmp_path / "raw"
    source.mkdir()
    lines = [json.dumps(_dialogue(cid)) for cid in range(n_dialogues, 0, -1)]
    (source / "test_data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (source / "movies_with_mentions.csv").write_text(
        "movieId,movieName,nbMentions\n10,Heat  (1995),5\n11,Up (2009),3\n12,No Year Film,1\n", encoding="utf-8")
    return source


def test_clean_movie_name() -> None:
    assert clean_movie_name("Police Academy  (1984)") == ("Police Academy", 1984)
    assert clean_movie_name("American Pie ") == ("American Pie", None)


def test_build_on_a_small_slice(tmp_path: Path) -> None:
    summary = build_redial(_source(tmp_path, 10), tmp_path / "out")
    assert summary["splits"] == {"train": {"dialogues": 8, "samples": 8}, "validation": {"dialogues": 1, "samples": 1},
                                 "test": {"dialogues": 1, "samples": 1}}
    assert summary["movies_without_year_left_out"] == 1 and summary["catalog_items"] == 2
    data = load_dataset(str(tmp_path / "out"))
    (example,) = data.split("test")
    # only the message introducing Up (2009) counts: "@12" has no year, "@11 again" is not new
    assert example.groundtruth == (("Up", 2009),)
    assert example.seen_titles == ("Heat",)
    assert example.prompt[0]["content"].endswith("User: hi, I loved Heat (1995)")
    assert example.context_items[0].liked is True
    assert example.dialog_id == "10"  # conversationId order: the last dialogue is the test split
    with gzip.open(tmp_path / "out" / "train.jsonl.gz", "rt") as handle:
        first = json.loads(handle.readline())
    assert first["dialog_id"] == "1"
    assert (tmp_path / "out" / "ATTRIBUTION.md").read_text().count("CC BY 4.0") == 1


def test_build_is_reproducible(tmp_path: Path) -> None:
    source = _source(tmp_path, 10)
    build_redial(source, tmp_path / "a")
    build_redial(source, tmp_path / "b")
    for name in ("train.jsonl.gz", "test.jsonl.gz", "catalog.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_bad_source_leaves_nothing_behind(tmp_path: Path) -> None:
    source = _source(tmp_path, 3)
    (source / "test_data.jsonl").write_text('{"conversationId": "1"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="test_data.jsonl: line 1"):
        build_redial(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".redial-build-*"))
