"""Per-run records to commit: every file a report is rebuilt from, without weights, checkpoints or sampled texts.

Why: `results/runs/` is git-ignored (weights), so a committed table could not be recomputed by a reader. A record
keeps, per complete run folder: spec.json, environment.json, metrics.json, summary.json, curve.jsonl,
train_log.jsonl, and examples.jsonl reduced to each example's id, prompt id, ground truth and scores (the raw text
and its parse are left out: they are what makes a folder large, and no table reads them). The records of a
directory are laid out as `<out>/runs/<run_id>/`, so `bench report --results-dir <out>` rebuilds the tables from
them alone (HELM's "reports rebuilt purely from files").
"""

from collections.abc import Iterable
from pathlib import Path

from bench.errors import BenchError
from bench.runs.folders import RunFolder, atomic_write_jsonl, atomic_write_text, read_jsonl, runs_dir

RECORD_FILES = ("spec.json", "environment.json", "metrics.json", "summary.json", "curve.jsonl", "train_log.jsonl")
"""Copied as they are (a file a run does not have, such as an untrained method's curve, is skipped)."""
EXAMPLE_FIELDS = ("id", "prompt_id", "groundtruth", "scores")
"""What each line of examples.jsonl keeps: the report's per-example columns and the ground-truth sizes."""


def export_record(folder: RunFolder, out_dir: Path) -> Path:
    """Write `folder`'s record to `out_dir/runs/<folder name>/` and return that directory; metrics.json last, so a
    record interrupted halfway reads as incomplete."""
    if not folder.is_complete():
        raise BenchError(f"{folder.root}: incomplete run (no metrics.json); nothing exported")
    target = runs_dir(out_dir) / folder.root.name
    examples = [{key: record[key] for key in EXAMPLE_FIELDS if key in record}
                for record in read_jsonl(folder.examples_path)]
    atomic_write_jsonl(target / "examples.jsonl", examples)
    for name in RECORD_FILES:
        source = folder.root / name
        if name != "metrics.json" and source.is_file():
            atomic_write_text(target / name, source.read_text(encoding="utf-8"))
    atomic_write_text(target / "metrics.json", folder.metrics_path.read_text(encoding="utf-8"))
    return target


def export_records(results_dir: Path, out_dir: Path, run_ids: Iterable[str] | None = None) -> list[Path]:
    """Export every complete run under `results_dir/runs/` (or only `run_ids`); incomplete folders are skipped."""
    root = runs_dir(results_dir)
    if not root.is_dir():
        raise BenchError(f"{root}: no runs directory to export from")
    wanted = None if run_ids is None else set(run_ids)
    folders = [RunFolder(path) for path in sorted(root.iterdir())
               if path.is_dir() and (wanted is None or path.name in wanted)]
    if wanted is not None and (missing := wanted - {folder.root.name for folder in folders}):
        raise BenchError(f"{root}: no run folder for {', '.join(sorted(missing))}")
    return [export_record(folder, out_dir) for folder in folders if folder.is_complete()]
