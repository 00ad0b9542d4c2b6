"""A loaded dataset: splits of examples in the data contract plus the catalog they are evaluated against.

Its own module so that the loaders (`bench.data.datasets`) and the generators they dispatch to
(`bench.data.synthetic`) both depend on it without depending on each other.
"""

from dataclasses import dataclass

from bench.data.catalog import Catalog
from bench.data.records import Example
from bench.errors import DataError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Dataset:
    """Splits of examples plus the item catalog they are evaluated against."""

    name: str
    splits: dict[str, tuple[Example, ...]]
    catalog: Catalog
    source: str = ""

    def split(self, name: str) -> tuple[Example, ...]:
        """Examples of one split; a split the dataset lacks is a DataError naming what it has."""
        if name not in self.splits:
            raise DataError(f"{self.source or self.name}: no '{name}' split (has: {', '.join(self.splits) or 'none'})")
        return self.splits[name]

    def corpus(self) -> list[str]:
        """Texts a local tokenizer is trained on: training prompts and completions, then every catalog title."""
        texts: list[str] = []
        for example in self.splits.get("train", ()) or next(iter(self.splits.values()), ()):
            texts.extend(message["content"] for message in example.prompt)
            if example.completion:
                texts.append(example.completion)
        texts.extend(f"{title} ({year})" for title, year in self.catalog.items)
        return texts
