"""Reading predictions files: JSONL of `{"id": ..., "text": ...}` holding raw model output."""

from pathlib import Path

from bench.data.jsonl import iter_jsonl
from bench.errors import DataError


def load_predictions(path: str | Path) -> dict[str, str]:
    """id -> raw text; a bad line or a repeated id is a DataError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    predictions: dict[str, str] = {}
    for where, _, record in iter_jsonl(path):
        if not isinstance(record, dict) or "id" not in record or not isinstance(record.get("text"), str):
            raise DataError(f"{where}: expected an object with 'id' and string 'text'")
        prediction_id = str(record["id"])
        if prediction_id in predictions:
            raise DataError(f"{where}: duplicate id {prediction_id!r}")
        predictions[prediction_id] = record["text"]
    return predictions
