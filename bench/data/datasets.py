"""Datasets by name or path, all in the data contract (DESIGN.md): `redial` (shipped), `synthetic` (generated),
`reddit_v2` (a `load_from_disk` directory the user provides), or any directory of `train/validation/test.jsonl`.

Bad records raise DataError naming the file and the line (or split and index) and what is wrong.
"""

from pathlib import Path
from typing import Any

from bench.data.catalog import load_catalog
from bench.data.dataset import SPLITS, Dataset
from bench.data.jsonl import iter_jsonl
from bench.data.records import ContextItem, Example, Item
from bench.errors import DataError, UnknownNameError

SHIPPED_DIR = Path(__file__).parent / "shipped"
NAMED_DATASETS = {
    "redial": "ReDial movie dialogues (CC BY 4.0), shipped processed inside the project",
    "synthetic": "seeded generator with planted tastes, for controlled experiments and fast checks",
    "reddit_v2": "the authors' processed Reddit-v2 (pass --dataset PATH to its load_from_disk dir and --catalog)",
}


def _year(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise DataError(f"{where}: year {value!r} is not an integer")
    return int(str(value).strip())


def _messages(value: object, where: str, field_name: str) -> tuple[dict[str, str], ...]:
    if isinstance(value, str):
        return ({"role": "user", "content": value},)
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: '{field_name}' must be a non-empty list of chat messages or a string")
    messages: list[dict[str, str]] = []
    for message in value:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise DataError(f"{where}: '{field_name}' holds a message without string 'content'")
        messages.append({"role": str(message.get("role", "user")), "content": message["content"]})
    return tuple(messages)


def example_from_record(record: Any, where: str, fallback_id: str) -> Example:
    """Validate one contract record (a JSON object) into an Example; `where` names file and line for errors."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for required in ("prompt", "groundtruth_with_release_year"):
        if required not in record:
            raise DataError(f"{where}: missing field '{required}'")
    prompt = _messages(record["prompt"], where, "prompt")
    groundtruth: list[Item] = []
    raw_gt = record["groundtruth_with_release_year"]
    if not isinstance(raw_gt, list):
        raise DataError(f"{where}: 'groundtruth_with_release_year' must be a list of [title, year]")
    for pair in raw_gt:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not isinstance(pair[0], str):
            raise DataError(f"{where}: ground-truth entry {pair!r} is not [title, year]")
        groundtruth.append((pair[0], _year(pair[1], where)))
    seen = record.get("seen_titles", [])
    if not isinstance(seen, list) or not all(isinstance(title, str) for title in seen):
        raise DataError(f"{where}: 'seen_titles' must be a list of strings")
    completion = record.get("completion")
    if completion is not None:
        completion = _messages(completion, where, "completion")[-1]["content"]
    context = tuple(ContextItem(str(c[0]), _year(c[1], where), c[2] if isinstance(c[2], bool) else None)
                    for c in record.get("context_items", []) if isinstance(c, list) and len(c) == 3)
    return Example(id=str(record.get("id", fallback_id)), prompt=prompt, groundtruth=tuple(groundtruth),
                   seen_titles=tuple(seen), dialog_id=str(record.get("dialog_id", "")), completion=completion,
                   context_items=context)


def read_jsonl_split(path: Path, split: str) -> tuple[Example, ...]:
    """Read one split file (.jsonl or .jsonl.gz); ids must be unique within it."""
    examples: list[Example] = []
    ids: set[str] = set()
    for where, line_number, record in iter_jsonl(path):
        example = example_from_record(record, where, f"{split}-{line_number}")
        if example.id in ids:
            raise DataError(f"{where}: duplicate id {example.id!r}")
        ids.add(example.id)
        examples.append(example)
    return tuple(examples)


def _split_file(directory: Path, split: str) -> Path | None:
    for suffix in (".jsonl", ".jsonl.gz"):
        candidate = directory / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _catalog_in(directory: Path) -> Path | None:
    for name in ("catalog.csv", "catalog.jsonl", "catalog.pkl", "gt_catalog.pkl"):
        if (directory / name).is_file():
            return directory / name
    return None


def load_jsonl_dir(directory: Path, catalog: str | Path | None = None, name: str | None = None) -> Dataset:
    """A directory of split JSONL files (any subset) and a catalog file (in it or given)."""
    splits = {split: read_jsonl_split(path, split) for split in SPLITS
              if (path := _split_file(directory, split)) is not None}
    if not splits:
        raise DataError(f"{directory}: no train/validation/test .jsonl files")
    catalog_path = Path(catalog) if catalog else _catalog_in(directory)
    if catalog_path is None:
        raise DataError(f"{directory}: no catalog.csv in the directory; pass --catalog PATH")
    return Dataset(name or directory.name, splits, load_catalog(catalog_path), str(directory))


def load_reddit_v2(directory: Path, catalog: str | Path | None) -> Dataset:
    """The authors' processed Reddit-v2: a `datasets.load_from_disk` directory plus a catalog (usually a .pkl)."""
    if catalog is None:
        found = _catalog_in(directory)
        if found is None:
            raise DataError(f"{directory}: reddit_v2 needs its catalog; pass --catalog PATH (e.g. gt_catalog.pkl)")
        catalog = found
    from datasets import load_from_disk

    try:
        loaded = load_from_disk(str(directory))
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"{directory}: not a load_from_disk dataset directory ({exc})") from None
    splits: dict[str, tuple[Example, ...]] = {}
    for split in SPLITS:
        if split not in loaded:
            continue
        splits[split] = tuple(example_from_record(dict(record), f"{directory}: {split} record {index}",
                                                  f"{split}-{index}")
                              for index, record in enumerate(loaded[split]))
    return Dataset("reddit_v2", splits, load_catalog(catalog), str(directory))


def _looks_like_load_from_disk(directory: Path) -> bool:
    return (directory / "dataset_dict.json").is_file()


def load_dataset(name_or_path: str, catalog: str | Path | None = None, synthetic_size: str = "default",
                 seed: int = 0) -> Dataset:
    """Resolve a dataset name (`redial`, `synthetic`, `synthetic:<size>`, `reddit_v2`) or a path into a Dataset."""
    if name_or_path == "redial":
        return load_jsonl_dir(SHIPPED_DIR / "redial", catalog, name="redial")
    if name_or_path == "synthetic" or name_or_path.startswith("synthetic:"):
        from bench.data.synthetic import synthetic_dataset

        return synthetic_dataset(size=name_or_path.partition(":")[2] or synthetic_size, seed=seed)
    if name_or_path == "reddit_v2":
        raise DataError("reddit_v2 is not shipped: pass --dataset PATH to its load_from_disk directory and --catalog")
    path = Path(name_or_path)
    if path.is_dir():
        if _looks_like_load_from_disk(path):
            return load_reddit_v2(path, catalog)
        return load_jsonl_dir(path, catalog)
    if path.exists() or "/" in name_or_path or name_or_path.startswith("."):
        raise DataError(f"{path}: not a dataset directory")
    raise UnknownNameError("dataset", name_or_path, list(NAMED_DATASETS))
