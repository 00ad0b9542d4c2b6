"""Summary numbers of a dataset for `bench data info`."""

from statistics import mean

from bench.data.dataset import Dataset


def dataset_info(dataset: Dataset) -> dict[str, object]:
    """Split sizes, catalog size, and ground-truth / seen items per sample."""
    splits: dict[str, dict[str, float | int]] = {}
    for name, examples in dataset.splits.items():
        gt_sizes = [len(example.groundtruth) for example in examples] or [0]
        splits[name] = {
            "samples": len(examples),
            "dialogues": len({example.dialog_id for example in examples}),
            "unique_prompts": len({example.prompt_key for example in examples}),
            "groundtruth_mean": round(mean(gt_sizes), 3),
            "groundtruth_min": min(gt_sizes),
            "groundtruth_max": max(gt_sizes),
            "seen_mean": round(mean([len(example.seen_titles) for example in examples] or [0]), 3),
            "with_completion": sum(1 for example in examples if example.completion),
        }
    return {"name": dataset.name, "source": dataset.source, "catalog_items": len(dataset.catalog),
            "catalog_dropped": len(dataset.catalog.dropped), "splits": splits}
