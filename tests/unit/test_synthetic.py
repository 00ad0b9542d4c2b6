"""The synthetic dataset: determinism, split hygiene, planted structure, presets and the on-disk round trip."""

from dataclasses import replace

import pytest

from bench.data.catalog import normalize_title
from bench.data.dataset import SPLITS
from bench.data.datasets import load_dataset, load_jsonl_dir
from bench.data.synthetic import (
    MAX_SYNTHETIC_YEAR,
    MIN_SYNTHETIC_YEAR,
    SYNTHETIC_SIZES,
    PlantedItem,
    SyntheticConfig,
    generate_synthetic,
    plant_items,
    synthetic_dataset,
    write_synthetic,
)
from bench.errors import UnknownNameError
from bench.evaluation.parsing import format_item, parse_recommendations

SMOKE = SYNTHETIC_SIZES["smoke"]


@pytest.fixture(scope="module")
def smoke():
    return synthetic_dataset("smoke")


def test_same_seed_gives_identical_records(smoke):
    again = synthetic_dataset("smoke", seed=0)
    assert again.splits == smoke.splits
    assert again.catalog.items == smoke.catalog.items
    assert again.catalog.mentions == smoke.catalog.mentions


def test_different_seed_gives_different_records(smoke):
    other = synthetic_dataset("smoke", seed=1)
    assert other.catalog.items != smoke.catalog.items
    assert [e.groundtruth for e in other.split("train")] != [e.groundtruth for e in smoke.split("train")]


def test_seed_argument_overrides_the_config_seed():
    config = replace(SMOKE, seed=7)
    assert synthetic_dataset(config=config).splits == synthetic_dataset(config=SMOKE, seed=7).splits
    assert synthetic_dataset(config=config).splits != synthetic_dataset(config=config, seed=0).splits


def test_training_split_does_not_depend_on_the_other_split_sizes(smoke):
    bigger = synthetic_dataset(config=replace(SMOKE, n_validation=50, n_test=3))
    assert bigger.split("train") == smoke.split("train")


def test_split_sizes_ids_and_prompts_are_disjoint(smoke):
    assert [len(smoke.split(s)) for s in SPLITS] == [SMOKE.n_train, SMOKE.n_validation, SMOKE.n_test]
    examples = [e for s in SPLITS for e in smoke.split(s)]
    assert len({e.id for e in examples}) == len(examples)
    assert len({e.dialog_id for e in examples}) == len(examples)
    assert len({e.prompt_key for e in examples}) == len(examples)
    assert smoke.split("train")[12].id == "synthetic-train-00012"


def test_records_follow_the_contract(smoke):
    low_liked, high_liked = SMOKE.liked_per_prompt
    low_gt, high_gt = SMOKE.groundtruth_per_prompt
    for split in SPLITS:
        for example in smoke.split(split):
            assert set(example.groundtruth) <= smoke.catalog.exact_index
            seen = {normalize_title(title) for title in example.seen_titles}
            assert not seen & {normalize_title(title) for title, _ in example.groundtruth}
            assert low_liked <= len(example.seen_titles) <= high_liked
            assert low_gt <= len(example.groundtruth) <= high_gt
            assert [c.title for c in example.context_items] == list(example.seen_titles)
            assert all(c.liked is True for c in example.context_items)
            content = example.prompt[-1]["content"]
            assert "User: " in content
            assert all(format_item((c.title, c.year)) in content for c in example.context_items)


def _groundtruth_follows_planted_order(planted: dict[str, PlantedItem], liked: list[str], groundtruth: list[str],
                                       items_per_taste: int) -> bool:
    """Some liked item is the anchor: the ground truth is the first non-liked items after it, in planted order."""
    tastes = {planted[title].taste for title in liked + groundtruth}
    if len(tastes) != 1:
        return False
    liked_positions = {planted[title].position for title in liked}
    positions = [planted[title].position for title in groundtruth]
    for anchor in liked_positions:
        following = [(anchor + step) % items_per_taste for step in range(1, items_per_taste)]
        expected = [position for position in following if position not in liked_positions][:len(positions)]
        if expected == positions:
            return True
    return False


def test_groundtruth_is_the_next_items_of_the_liked_taste(smoke):
    planted = {entry.title: entry for entry in plant_items(SMOKE)}
    for example in smoke.split("train"):
        assert _groundtruth_follows_planted_order(planted, list(example.seen_titles),
                                                  [title for title, _ in example.groundtruth],
                                                  SMOKE.items_per_taste)


def test_default_catalog_has_unique_plausible_titles():
    config = SYNTHETIC_SIZES["default"]
    planted = plant_items(config)
    assert len(planted) == config.n_tastes * config.items_per_taste == 240
    assert len({normalize_title(entry.title) for entry in planted}) == 240
    assert all(MIN_SYNTHETIC_YEAR <= entry.year <= MAX_SYNTHETIC_YEAR for entry in planted)
    assert all(len(entry.title.split()) == 2 and entry.mentions >= 1 for entry in planted)
    assert sorted((entry.taste, entry.position) for entry in planted) == [
        (taste, position) for taste in range(12) for position in range(20)]


def test_unknown_size_suggests_a_known_one():
    with pytest.raises(UnknownNameError, match="Did you mean 'smoke'"):
        synthetic_dataset("smok")


def test_config_rejects_impossible_sizes():
    with pytest.raises(ValueError):
        SyntheticConfig(10, 2, 2, n_tastes=2, items_per_taste=6, liked_per_prompt=(2, 3),
                        groundtruth_per_prompt=(3, 5))
    with pytest.raises(ValueError):
        SyntheticConfig(10, 2, 2, n_tastes=2, items_per_taste=20, liked_per_prompt=(3, 2))


def test_load_dataset_by_name_uses_the_generator(smoke):
    assert load_dataset("synthetic", synthetic_size="smoke", seed=0).splits == smoke.splits


def test_written_directory_loads_back_identically(tmp_path, smoke):
    written = write_synthetic(tmp_path, SMOKE)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "catalog.csv", "test.jsonl", "train.jsonl", "validation.jsonl"]
    loaded = load_jsonl_dir(tmp_path)
    assert loaded.splits == written.splits == smoke.splits
    assert loaded.catalog.items == smoke.catalog.items
    assert loaded.catalog.mentions == smoke.catalog.mentions


DEMO = SyntheticConfig(n_train=400, n_validation=8, n_test=8, n_tastes=6, items_per_taste=10, demo_off_taste=0.3)


def _taste_of(config: SyntheticConfig) -> dict[str, int]:
    return {entry.title: entry.taste for entry in plant_items(config)}


def test_demonstrations_are_imperfect_as_configured():
    """Each demonstration: 20 distinct catalog titles, none liked; its first len(ground truth) titles are the ground
    truth with about 30% swapped off-taste, in shuffled order; the rest is the popularity ranking."""
    dataset = generate_synthetic(DEMO)
    taste = _taste_of(DEMO)
    by_mentions = [entry.item for entry in sorted(plant_items(DEMO), key=lambda entry: -entry.mentions)]
    swapped, kept, in_order = 0, 0, 0
    for example in dataset.split("train"):
        items = parse_recommendations(example.completion)
        assert len(items) == 20 and len(set(items)) == 20
        assert all(item in dataset.catalog.exact_index for item in items)
        assert not {title for title, _ in items} & set(example.seen_titles)
        head, fill = items[:len(example.groundtruth)], items[len(example.groundtruth):]
        own = taste[example.groundtruth[0][0]]
        off, on = sum(taste[title] != own for title, _ in head), sum(item in example.groundtruth for item in head)
        assert off + on == len(head)  # every head title is a kept ground-truth title or an off-taste swap
        swapped, kept = swapped + off, kept + on
        assert fill == [item for item in by_mentions if item not in head and item[0] not in example.seen_titles][:len(fill)]
        in_order += [item for item in head if item in example.groundtruth] == [
            item for item in example.groundtruth if item in head]
    total = swapped + kept
    assert abs(swapped / total - 0.3) < 0.03
    # kept titles appear in planted order only as often as a shuffle leaves them so (never for all prompts)
    assert in_order < 0.7 * 400


def test_demonstrations_do_not_change_the_prompts_or_other_splits():
    with_demos = generate_synthetic(DEMO)
    without = generate_synthetic(replace(DEMO, demo_off_taste=None))
    for split in SPLITS:
        assert [replace(e, completion=None) for e in with_demos.split(split)] == list(without.split(split))
    assert all(e.completion is None for e in without.split("train"))
    assert all(e.completion is None for e in with_demos.split("test"))


def test_unshuffled_demonstrations_without_swaps_are_groundtruth_plus_popularity():
    config = replace(DEMO, demo_off_taste=0.0, demo_shuffled=False)
    for example in generate_synthetic(config).split("train")[:20]:
        items = parse_recommendations(example.completion)
        assert tuple(items[:len(example.groundtruth)]) == example.groundtruth


def test_demonstration_settings_are_validated():
    with pytest.raises(ValueError, match="share"):
        replace(DEMO, demo_off_taste=1.5)
    with pytest.raises(ValueError, match="besides the liked"):
        SyntheticConfig(10, 2, 2, n_tastes=2, items_per_taste=10, demo_off_taste=0.5)


def test_weak_tail_demonstrations_keep_the_head_and_scatter_the_rest():
    """demo_head 1 with demo_tail_span 10: the first title is the first ground-truth title; every other ground-truth
    title sits at ranks 2-11 among popular fill (none swapped at demo_off_taste 0), and the list is 20 distinct
    titles."""
    config = replace(DEMO, demo_off_taste=0.0, demo_head=1, demo_tail_span=10)
    ranks_used: set[int] = set()
    for example in generate_synthetic(config).split("train"):
        items = parse_recommendations(example.completion)
        assert len(items) == 20 and len(set(items)) == 20
        assert items[0] == example.groundtruth[0]
        later = [items.index(item) + 1 for item in example.groundtruth[1:]]
        assert all(2 <= rank <= 11 for rank in later)
        ranks_used.update(later)
    assert ranks_used == set(range(2, 12))  # scattered over the whole span, not packed after the head


def test_weak_tail_settings_are_validated():
    with pytest.raises(ValueError, match="demo_head"):
        replace(DEMO, demo_head=4)  # a prompt may have only 3 ground-truth titles
    with pytest.raises(ValueError, match="demo_tail_span"):
        replace(DEMO, demo_head=1, demo_tail_span=3)  # cannot hold the 4 titles after the head of a 5-title truth
