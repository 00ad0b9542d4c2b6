"""Reading predictions files: JSONL of `{"id": ..., "text": ...}` holding raw model output."""

import json
from pathlib import Path

from bench.errors import DataError


def load_predictions(path: str | Path) -> dict[str, str]:
    """id -> raw text; a bad line or a repeated id is a DataError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    predictions: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: invalid JSON ({exc.msg})") from None
            if not isinstance(record, dict) or "id" not in record or not isinstance(record.get("text"), str):
                raise DataError(f"{where}: expected an object with 'id' and string 'text'")
            prediction_id = str(record["id"])
            if prediction_id in predictions:
                raise DataError(f"{where}: duplicate id {prediction_id!r}")
            predictions[prediction_id] = record["text"]
    return predictions
