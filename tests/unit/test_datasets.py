"""Loading datasets: the shipped redial, JSONL directories, load_from_disk directories, and bad records."""

import json
from pathlib import Path

import pytest

from bench.data.datasets import load_dataset
from bench.errors import DataError, UnknownNameError

RECORD = {"id": "a", "prompt": [{"role": "user", "content": "hi"}],
          "groundtruth_with_release_year": [["Heat", "1995"]], "seen_titles": ["Up"]}


def _write(directory: Path, name: str, records: list[object]) -> None:
    (directory / name).write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")


def test_shipped_redial_loads_with_disjoint_dialogue_splits() -> None:
    data = load_dataset("redial")
    dialogs = {split: {e.dialog_id for e in examples} for split, examples in data.splits.items()}
    assert set(dialogs) == {"train", "validation", "test"}
    assert not dialogs["train"] & dialogs["test"] and not dialogs["train"] & dialogs["validation"]
    assert len(data.catalog) > 6000
    assert all(e.groundtruth for e in data.split("test"))
    assert max(int(d) for d in dialogs["train"]) < min(int(d) for d in dialogs["test"])


def test_jsonl_directory_with_catalog(tmp_path: Path) -> None:
    _write(tmp_path, "test.jsonl", [RECORD, {**RECORD, "id": "b"}])
    (tmp_path / "catalog.csv").write_text("title,year\nHeat,1995\n", encoding="utf-8")
    data = load_dataset(str(tmp_path))
    assert list(data.splits) == ["test"]
    assert data.split("test")[0].groundtruth == (("Heat", 1995),)
    with pytest.raises(DataError, match="no 'train' split"):
        data.split("train")


@pytest.mark.parametrize(("record", "message"), [
    ({**RECORD, "groundtruth_with_release_year": [["Heat", "19x5"]]}, "line 2: year '19x5'"),
    ({k: v for k, v in RECORD.items() if k != "prompt"}, "line 2: missing field 'prompt'"),
    ({**RECORD, "seen_titles": [3]}, "line 2: 'seen_titles'"),
    ({**RECORD, "id": "a"}, "line 2: duplicate id 'a'"),
    ([1, 2], "line 2: expected a JSON object"),
])
def test_bad_records_name_file_and_line(tmp_path: Path, record: object, message: str) -> None:
    _write(tmp_path, "train.jsonl", [RECORD, record])
    (tmp_path / "catalog.csv").write_text("title,year\nHeat,1995\n", encoding="utf-8")
    with pytest.raises(DataError, match=message) as error:
        load_dataset(str(tmp_path))
    assert "train.jsonl" in str(error.value)


def test_missing_catalog_and_unknown_names(tmp_path: Path) -> None:
    _write(tmp_path, "test.jsonl", [RECORD])
    with pytest.raises(DataError, match="--catalog"):
        load_dataset(str(tmp_path))
    with pytest.raises(UnknownNameError, match="redial"):
        load_dataset("redail")


def test_reddit_v2_load_from_disk_directory(tmp_path: Path) -> None:
    import pickle

    from datasets import Dataset as HFDataset
    from datasets import DatasetDict

    record = {"prompt": [{"role": "user", "content": "USER: any comedies?"}],
              "groundtruth_with_release_year": [["A Mighty Wind", "2003"]], "seen_titles": ["Best in Show"]}
    DatasetDict({"test": HFDataset.from_list([record, record])}).save_to_disk(str(tmp_path / "reddit"))
    catalog = tmp_path / "gt_catalog.pkl"
    catalog.write_bytes(pickle.dumps([("A Mighty Wind", 2003), ("The Wall", 201)]))
    data = load_dataset(str(tmp_path / "reddit"), catalog=catalog)
    assert [e.id for e in data.split("test")] == ["test-0", "test-1"]
    assert data.split("test")[0].prompt_key == data.split("test")[1].prompt_key
    assert len(data.catalog) == 1 and len(data.catalog.dropped) == 1
