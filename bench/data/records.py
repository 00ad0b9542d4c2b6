"""The data contract: one recommendation sample, in the processed Reddit-v2 shape (DESIGN.md, data contract).

A record holds the chat prompt, the ground-truth items with release years, the titles already mentioned
(`seen_titles`), an optional SFT demonstration (`completion`), and our own `id` and `dialog_id`.
"""

from dataclasses import dataclass, field
from typing import Any

Item = tuple[str, int]
"""A movie as (title, release year)."""


@dataclass(frozen=True)
class ContextItem:
    """A movie mentioned in the dialogue so far; `liked` is True/False when the data says, else None."""

    title: str
    year: int
    liked: bool | None = None


@dataclass(frozen=True)
class Example:
    """One sample: prompt messages -> ground-truth items, with seen titles to exclude."""

    id: str
    prompt: tuple[dict[str, str], ...]
    groundtruth: tuple[Item, ...]
    seen_titles: tuple[str, ...]
    dialog_id: str = ""
    completion: str | None = None
    context_items: tuple[ContextItem, ...] = field(default=())

    @property
    def prompt_key(self) -> str:
        """Identity of the prompt text: samples sharing it are answered by one generation."""
        return "\x1e".join(f"{m.get('role', '')}\x1f{m.get('content', '')}" for m in self.prompt)

    def to_json(self) -> dict[str, Any]:
        """The on-disk record (years written as strings, as in the authors' Reddit-v2 files)."""
        record: dict[str, Any] = {
            "id": self.id,
            "dialog_id": self.dialog_id,
            "prompt": [dict(m) for m in self.prompt],
            "groundtruth_with_release_year": [[t, str(y)] for t, y in self.groundtruth],
            "seen_titles": list(self.seen_titles),
        }
        if self.completion is not None:
            record["completion"] = [{"role": "assistant", "content": self.completion}]
        if self.context_items:
            record["context_items"] = [[c.title, c.year, c.liked] for c in self.context_items]
        return record
