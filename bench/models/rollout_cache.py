"""On-disk cache of generated completions, shared by training-time evaluation and the final evaluation.

An entry is keyed by sha256 of (backbone fingerprint, producer, prompt messages, sampling settings, seed), where the
producer names the engine, its version and its dtype (`bench.models.sampling.producer`), and stored as one
small JSON file `root/<first 2 hex chars>/<key>.json` with the completions and a checksum of them. Writes are
atomic (temporary file + os.replace), so an interrupted run leaves only whole entries; reads never trust an entry:
anything unreadable, truncated, with a wrong checksum or a different key is deleted and reported as a miss.
"""

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol


class SettingsKey(Protocol):
    """Anything with a stable `key()` string describing how completions were sampled."""

    def key(self) -> str: ...


def entry_key(fingerprint: str, producer: str, prompt: Sequence[Mapping[str, str]], settings: SettingsKey,
              seed: int) -> str:
    """sha256 hex of the canonical JSON of (fingerprint, producer, prompt messages, settings key, seed)."""
    payload = {
        "fingerprint": fingerprint,
        "producer": producer,
        "prompt": [dict(message) for message in prompt],
        "settings": settings.key(),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def completions_checksum(completions: Sequence[str]) -> str:
    """sha256 hex of the completions' canonical JSON."""
    return hashlib.sha256(json.dumps(list(completions), ensure_ascii=False).encode("utf-8")).hexdigest()


class RolloutCache:
    """Completions on disk under `root`; counts `hits`, `misses` and `dropped` (corrupt entries deleted)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        self.dropped = 0

    def path_for(self, key: str) -> Path:
        """The file of one entry."""
        return self.root / key[:2] / f"{key}.json"

    def get(
        self, fingerprint: str, producer: str, prompt: Sequence[Mapping[str, str]], settings: SettingsKey, seed: int
    ) -> list[str] | None:
        """The cached completions, or None when absent or not trustworthy (the bad file is then deleted)."""
        key = entry_key(fingerprint, producer, prompt, settings, seed)
        path = self.path_for(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            self.misses += 1
            return None
        completions = _valid_completions(raw, key)
        if completions is None:
            path.unlink(missing_ok=True)
            self.dropped += 1
            self.misses += 1
            return None
        self.hits += 1
        return completions

    def put(
        self,
        fingerprint: str,
        producer: str,
        prompt: Sequence[Mapping[str, str]],
        settings: SettingsKey,
        seed: int,
        completions: Sequence[str],
    ) -> None:
        """Store completions atomically (a reader sees the old entry, no entry, or the whole new one)."""
        key = entry_key(fingerprint, producer, prompt, settings, seed)
        entry = {
            "key": key,
            "fingerprint": fingerprint,
            "producer": producer,
            "settings": settings.key(),
            "seed": seed,
            "completions": list(completions),
            "checksum": completions_checksum(completions),
        }
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{key[:8]}-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(entry, file, ensure_ascii=False)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _valid_completions(raw: bytes, key: str) -> list[str] | None:
    """The completions of an entry's bytes if it parses, carries `key`, and its checksum matches; else None."""
    try:
        entry: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    completions = entry.get("completions")
    if not isinstance(completions, list) or not all(isinstance(text, str) for text in completions):
        return None
    if entry.get("checksum") != completions_checksum(completions):
        return None
    return completions
