"""The `synthetic` dataset: seeded movie dialogues with planted tastes (DESIGN.md, facts from a prototype).

Why: controlled experiments and fast regression checks need a task whose answer is known. Every synthetic title
belongs to one latent taste and has a position in a planted circular order inside that taste. A prompt names 2-3
liked titles of one taste, starting at an anchor position and spanning a short window of that order; the ground
truth is the next 3-5 titles of the taste after the anchor that the user did not name. A model that learns the
tastes and their orders can therefore score close to 1, while popularity scores close to 0.

Popularity is planted as well: each title gets a mention count (a Zipf-like curve over a random permutation), and
anchors are drawn in proportion to it, so mention counts in the data follow the catalog's counts.

Everything is a pure function of the `SyntheticConfig` (its seed included); each split draws from its own random
stream, so the training split does not change when the validation or test sizes do. No prompt text occurs twice in
the dataset, so validation and test never repeat a training prompt verbatim.
"""

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path

from bench.data.catalog import Catalog, catalog_from_entries, write_catalog_csv
from bench.data.dataset import SPLITS, Dataset
from bench.data.prompts import N_RECOMMENDATIONS, recommendation_prompt
from bench.data.records import ContextItem, Example, Item
from bench.errors import UnknownNameError
from bench.evaluation.parsing import format_item

MIN_SYNTHETIC_YEAR = 1950
MAX_SYNTHETIC_YEAR = 2024
MAX_DRAWS_PER_PROMPT = 1000

FIRST_WORDS = (
    "Silent", "Crimson", "Golden", "Broken", "Hidden", "Midnight", "Electric", "Wild", "Frozen", "Distant",
    "Burning", "Lonely", "Velvet", "Iron", "Paper", "Secret", "Savage", "Gentle", "Hollow", "Bright",
    "Falling", "Restless", "Neon", "Silver", "Scarlet", "Endless", "Shadow", "Northern", "Rusty", "Quiet",
    "Stolen", "Lucky", "Bitter", "Sweet", "Last", "Crystal", "Thunder", "Desert", "Ocean", "Winter",
    "Summer", "Autumn", "Copper", "Marble", "Wicked", "Brave", "Fading", "Rising",
)
SECOND_WORDS = (
    "Harbor", "River", "Empire", "Garden", "Horizon", "Station", "Kingdom", "Engine", "Letter", "Mirror",
    "Frontier", "Highway", "Island", "Lantern", "Machine", "Orchard", "Promise", "Quarry", "Signal", "Temple",
    "Valley", "Voyage", "Witness", "Canyon", "Circus", "Diamond", "Fortress", "Gambit", "Heist", "Journey",
    "Ledger", "Meadow", "Outpost", "Parade", "Rebellion", "Saloon", "Tower", "Umbrella", "Vendetta", "Warden",
    "Anthem", "Bridge", "Compass", "Dynasty", "Echo", "Falcon", "Galaxy", "Harvest",
)

LIKED_TEMPLATES = (
    "User: I loved {liked}. Any ideas?",
    "User: I really enjoyed {liked}. What else would I like?",
    "User: My favorites are {liked}. Can you suggest something similar?",
    "User: I've seen {liked} and liked them a lot. What should I watch next?",
)
OPENINGS = (
    "",
    "User: Hi! Can you help me find a movie?\nRecommender: Sure, what kind of movies do you like?\n",
    "User: Hello, I need something to watch tonight.\nRecommender: Happy to help. What have you enjoyed lately?\n",
)


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and seed of one synthetic dataset; `*_per_prompt` are inclusive (low, high) ranges."""

    n_train: int
    n_validation: int
    n_test: int
    n_tastes: int
    items_per_taste: int
    liked_per_prompt: tuple[int, int] = (2, 3)
    groundtruth_per_prompt: tuple[int, int] = (3, 5)
    seed: int = 0
    demo_off_taste: float | None = None
    """When set, every training example carries an imperfect demonstration (its `completion`, what SFT learns): its
    ground truth with each title swapped with this probability for a title of another taste, then the catalog's most
    mentioned titles up to 20 (the `groundtruth+popularity` answer of `algorithms.sft`, made imperfect). None: no
    demonstrations (SFT then learns ground truth topped up by popularity)."""
    demo_shuffled: bool = True
    """Shuffle the ground-truth part of each demonstration, so SFT does not learn the planted order and leaves the
    rank order to gain."""
    demo_head: int = 0
    """Leading ground-truth titles of each demonstration kept exact and in planted order (never swapped, never
    shuffled): a weak-tail demonstration is right at the top of the list and degrades below it, the regime the
    Rank-GRPO paper describes ("ranking quality degrades sharply toward the end of the generated list")."""
    demo_tail_span: int | None = None
    """When set, the ground-truth titles after the head are scattered at random ranks among the first
    `demo_tail_span` ranks below the head, interleaved with the popular fill (misordered as well as noisy); None:
    they follow the head directly."""

    def __post_init__(self) -> None:
        if min(self.n_train, self.n_validation, self.n_test) < 0 or self.n_tastes < 1:
            raise ValueError("split sizes must be >= 0 and n_tastes >= 1")
        for name, (low, high) in (("liked_per_prompt", self.liked_per_prompt),
                                  ("groundtruth_per_prompt", self.groundtruth_per_prompt)):
            if not 1 <= low <= high:
                raise ValueError(f"{name} must be an inclusive range (low, high) with 1 <= low <= high")
        if self.liked_per_prompt[1] + self.groundtruth_per_prompt[1] >= self.items_per_taste:
            raise ValueError("items_per_taste must exceed the most liked plus ground-truth items of one prompt")
        if self.n_tastes * self.items_per_taste > len(FIRST_WORDS) * (len(SECOND_WORDS) - 1):
            raise ValueError("more items than distinct two-word titles")
        if self.demo_off_taste is not None:
            if not 0.0 <= self.demo_off_taste <= 1.0:
                raise ValueError("demo_off_taste must be a share between 0 and 1")
            if self.n_items < N_RECOMMENDATIONS + self.liked_per_prompt[1]:
                raise ValueError(f"demonstrations need at least {N_RECOMMENDATIONS} titles besides the liked ones")
        if not 0 <= self.demo_head <= self.groundtruth_per_prompt[0]:
            raise ValueError("demo_head must lie between 0 and the fewest ground-truth titles of a prompt")
        if self.demo_tail_span is not None and not (self.groundtruth_per_prompt[1] - self.demo_head
                                                    <= self.demo_tail_span <= N_RECOMMENDATIONS - self.demo_head):
            raise ValueError("demo_tail_span must hold the ground truth after the head and fit in the list")

    @property
    def n_items(self) -> int:
        return self.n_tastes * self.items_per_taste

    def split_sizes(self) -> dict[str, int]:
        return {"train": self.n_train, "validation": self.n_validation, "test": self.n_test}


SYNTHETIC_SIZES: dict[str, SyntheticConfig] = {
    "smoke": SyntheticConfig(n_train=120, n_validation=24, n_test=24, n_tastes=6, items_per_taste=12),
    "default": SyntheticConfig(n_train=1000, n_validation=100, n_test=100, n_tastes=12, items_per_taste=20),
    "check": SyntheticConfig(n_train=400, n_validation=32, n_test=48, n_tastes=6, items_per_taste=10),
    "testbed": SyntheticConfig(n_train=400, n_validation=400, n_test=200, n_tastes=6, items_per_taste=10),
    "testbed-noisy": SyntheticConfig(n_train=400, n_validation=64, n_test=200, n_tastes=6, items_per_taste=10,
                                     demo_off_taste=0.3),
}
"""`check`: the regression check's task (results/reference/), small enough that the tiny backbone learns it in a
minute of SFT on a 2-core CPU; select it with the dataset name `synthetic:check`.

`testbed`: the low-budget RL testbed (results/testbed/low-budget/README.md): the check's task with a 200-example test split
(power) and 400 validation prompts (200 on which SFT picks its checkpoint, 200 on which RL draws its curve); SFT learns ground truth topped up by popularity, so its start sits between chance
and the ceiling with hits to gain at every rank, and sampled groups have reward variance. `testbed-noisy`: the same
prompts with deliberately imperfect demonstrations (30% of the ground truth swapped off-taste, order shuffled), the
calibration candidate that put the tiny SFT start at chance (results/testbed/low-budget/README.md)."""


@dataclass(frozen=True)
class PlantedItem:
    """A synthetic title with its latent taste, its position in the taste's planted order, and its mention count."""

    title: str
    year: int
    taste: int
    position: int
    mentions: int

    @property
    def item(self) -> Item:
        return (self.title, self.year)


def plant_items(config: SyntheticConfig) -> tuple[PlantedItem, ...]:
    """All titles in taste-major planted order: entry `taste * items_per_taste + position`."""
    rng = random.Random(f"synthetic-catalog-{config.seed}")
    pairs = [(first, second) for first in FIRST_WORDS for second in SECOND_WORDS if first != second]
    titles = [f"{first} {second}" for first, second in rng.sample(pairs, config.n_items)]
    years = [rng.randint(MIN_SYNTHETIC_YEAR, MAX_SYNTHETIC_YEAR) for _ in titles]
    popularity_rank = list(range(config.n_items))
    rng.shuffle(popularity_rank)
    return tuple(
        PlantedItem(title, year, index // config.items_per_taste, index % config.items_per_taste,
                    mentions=max(1, round(100 / (rank + 1) ** 0.5)))
        for index, (title, year, rank) in enumerate(zip(titles, years, popularity_rank))
    )


def synthetic_catalog(planted: tuple[PlantedItem, ...]) -> Catalog:
    """The catalog sorted by title, so its order reveals nothing of the tastes or the planted order."""
    ordered = sorted(planted, key=lambda entry: entry.title)
    return catalog_from_entries(((p.title, p.year, p.mentions) for p in ordered), "synthetic")


def _join_titles(items: list[Item]) -> str:
    names = [format_item(item) for item in items]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _draw_prompt(rng: random.Random, planted: tuple[PlantedItem, ...], config: SyntheticConfig,
                 weights: list[int]) -> tuple[list[PlantedItem], list[PlantedItem], str]:
    """Liked items (in mention order), ground truth (in planted order) and the conversation text of one prompt."""
    anchor = rng.choices(range(len(planted)), weights=weights)[0]
    taste_start = anchor - planted[anchor].position

    def at(step: int) -> PlantedItem:
        return planted[taste_start + (planted[anchor].position + step) % config.items_per_taste]

    n_liked = rng.randint(*config.liked_per_prompt)
    n_groundtruth = rng.randint(*config.groundtruth_per_prompt)
    liked_steps = [0, *sorted(rng.sample(range(1, n_liked + 1), n_liked - 1))]
    liked = [at(step) for step in liked_steps]
    groundtruth = [at(step) for step in range(1, config.items_per_taste) if step not in liked_steps][:n_groundtruth]
    rng.shuffle(liked)
    statement = rng.choice(LIKED_TEMPLATES).format(liked=_join_titles([entry.item for entry in liked]))
    return liked, groundtruth, rng.choice(OPENINGS) + statement


def _demonstration(rng: random.Random, groundtruth: list[PlantedItem], liked: list[PlantedItem],
                   planted: tuple[PlantedItem, ...], config: SyntheticConfig) -> str:
    """An imperfect 20-title answer (`SyntheticConfig.demo_off_taste`): the first `demo_head` ground-truth titles
    exact and in order; each later one swapped with probability `demo_off_taste` for a distinct title of another
    taste, shuffled if asked, and placed right after the head or, with `demo_tail_span`, at random ranks among the
    popular fill within that span; the popular fill completes the list."""
    taste = groundtruth[0].taste
    head, rest = groundtruth[:config.demo_head], groundtruth[config.demo_head:]
    off_taste = iter(rng.sample([entry for entry in planted if entry.taste != taste], len(rest)))
    share = config.demo_off_taste or 0.0
    titles = [next(off_taste) if rng.random() < share else entry for entry in rest]
    if config.demo_shuffled:
        rng.shuffle(titles)
    fill = [entry for entry in sorted(planted, key=lambda entry: -entry.mentions)
            if entry not in titles and entry not in head and entry not in liked]
    if config.demo_tail_span is None:
        tail = titles + fill
    else:
        slots = set(rng.sample(range(config.demo_tail_span), len(titles)))
        placed, filler = iter(titles), iter(fill)
        tail = [next(placed) if slot in slots else next(filler) for slot in range(config.demo_tail_span)]
        tail += list(filler)
    return "\n".join(format_item(entry.item) for entry in (head + tail)[:N_RECOMMENDATIONS])


def _split_examples(split: str, size: int, planted: tuple[PlantedItem, ...], config: SyntheticConfig,
                    used_texts: set[str]) -> tuple[Example, ...]:
    rng = random.Random(f"synthetic-{split}-{config.seed}")
    demo_rng = random.Random(f"synthetic-demo-{config.seed}")
    with_demos = split == "train" and config.demo_off_taste is not None
    weights = [entry.mentions for entry in planted]
    examples: list[Example] = []
    for index in range(size):
        for _ in range(MAX_DRAWS_PER_PROMPT):
            liked, groundtruth, conversation = _draw_prompt(rng, planted, config, weights)
            if conversation not in used_texts:
                break
        else:
            raise ValueError(f"could not draw {size} distinct {split} prompts; use more tastes or items per taste")
        used_texts.add(conversation)
        example_id = f"synthetic-{split}-{index:05d}"
        examples.append(Example(
            id=example_id,
            prompt=tuple(recommendation_prompt(conversation)),
            groundtruth=tuple(entry.item for entry in groundtruth),
            seen_titles=tuple(entry.title for entry in liked),
            dialog_id=example_id,
            context_items=tuple(ContextItem(entry.title, entry.year, liked=True) for entry in liked),
            completion=(_demonstration(demo_rng, groundtruth, liked, planted, config)
                        if with_demos else None),
        ))
    return tuple(examples)


def generate_synthetic(config: SyntheticConfig, name: str = "synthetic") -> Dataset:
    """The dataset `config` describes, fully determined by it."""
    planted = plant_items(config)
    used_texts: set[str] = set()
    splits = {split: _split_examples(split, config.split_sizes()[split], planted, config, used_texts)
              for split in SPLITS}
    return Dataset(name, splits, synthetic_catalog(planted), f"synthetic (seed {config.seed})")


def synthetic_dataset(size: str = "default", seed: int | None = None,
                      config: SyntheticConfig | None = None) -> Dataset:
    """The named preset (or `config`) with its seed replaced by `seed` when one is given.

    Raises UnknownNameError for a size not in SYNTHETIC_SIZES (ignored when `config` is given).
    """
    if config is None:
        if size not in SYNTHETIC_SIZES:
            raise UnknownNameError("synthetic size", size, list(SYNTHETIC_SIZES))
        config = SYNTHETIC_SIZES[size]
    if seed is not None:
        config = replace(config, seed=seed)
    return generate_synthetic(config)


def write_synthetic(directory: str | Path, config: SyntheticConfig) -> Dataset:
    """Write train/validation/test.jsonl and catalog.csv (the JSONL-directory contract); returns the dataset."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dataset = generate_synthetic(config)
    for split, examples in dataset.splits.items():
        with (directory / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for example in examples:
                handle.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
    write_catalog_csv(dataset.catalog, directory / "catalog.csv")
    return dataset
