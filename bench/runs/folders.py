"""Run folders: `results/runs/<run_id>/` holds spec.json, environment.json, summary.json, examples.jsonl,
curve.jsonl, train_log.jsonl and rollouts.jsonl (training methods), metrics.json and method artifacts, plus `.lock`
(the OS lock a process holds while it builds the run, `bench.runs.runner`). Every write is atomic (temp file + rename);
metrics.json is written last, so its presence marks a completed run.
"""

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.data.jsonl import iter_jsonl
from bench.errors import DataError

DEFAULT_RESULTS_DIR = Path("results")


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the whole new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def atomic_write_jsonl(path: Path, records: Iterable[Any]) -> None:
    atomic_write_text(path, "".join(json.dumps(record, ensure_ascii=False, default=str) + "\n" for record in records))


def read_json(path: Path) -> Any:
    """Read a JSON file, with a DataError naming it when it is missing or corrupt."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: corrupt JSON ({exc.msg} at line {exc.lineno})") from None


def read_jsonl(path: Path) -> list[Any]:
    """Read a JSONL file; a corrupt line is a DataError naming file and line."""
    return [record for _, _, record in iter_jsonl(path)]


def append_jsonl(path: Path, record: Any) -> None:
    """Append one line and flush (curves grow while training; a torn last line is dropped by `read_curve`)."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


class RunFolder:
    """One run's directory and its well-known files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    spec_path = property(lambda self: self.root / "spec.json")
    environment_path = property(lambda self: self.root / "environment.json")
    metrics_path = property(lambda self: self.root / "metrics.json")
    summary_path = property(lambda self: self.root / "summary.json")
    examples_path = property(lambda self: self.root / "examples.jsonl")
    curve_path = property(lambda self: self.root / "curve.jsonl")
    train_log_path = property(lambda self: self.root / "train_log.jsonl")
    rollouts_path = property(lambda self: self.root / "rollouts.jsonl")
    lock_path = property(lambda self: self.root / ".lock")
    checkpoints_dir = property(lambda self: self.root / "checkpoints")

    def is_complete(self) -> bool:
        return self.metrics_path.is_file()

    def read_curve(self) -> list[dict[str, Any]]:
        """Curve points by step; a line torn by an interruption is ignored, and a step logged again after a resume
        keeps its last point."""
        if not self.curve_path.is_file():
            return []
        by_step: dict[int, dict[str, Any]] = {}
        for line in self.curve_path.read_text(encoding="utf-8").splitlines():
            try:
                point = json.loads(line)
                by_step[int(point["step"])] = point
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
        return [by_step[step] for step in sorted(by_step)]


def runs_dir(results_dir: Path) -> Path:
    return results_dir / "runs"


def read_untrusted_jsonl(path: Path) -> tuple[list[Any], str | None]:
    """Every non-blank line's parsed JSON (None where a line is not JSON), or why the file could not be read
    ("no <name>", "<name> unreadable (...)"); never raises, since run folders are untrusted files."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], f"no {path.name}"
    except OSError as error:
        return [], f"{path.name} unreadable ({type(error).__name__})"
    values: list[Any] = []
    for raw in filter(str.strip, text.splitlines()):
        try:
            values.append(json.loads(raw))
        except (ValueError, RecursionError):
            values.append(None)
    return values, None
