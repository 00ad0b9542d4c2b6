"""`bench bench rollout`'s measurement on a tiny backbone: one row per batch size and mode, every completion forced
to the requested length, and tokens/s read against a ceiling computed from the measured matmul throughput."""

import pytest

from bench.models.backbones import load_backbone
from benchmarks.rollout_speed import format_report, matmul_ceiling, rollout_speed

CORPUS = [f"I liked Movie {i} ({1950 + i % 70}).\nRecommend titles, one per line." for i in range(60)]


def test_rows_and_ceiling(tmp_path_factory: pytest.TempPathFactory) -> None:
    backbone = load_backbone("tiny", corpus=CORPUS, cache_dir=tmp_path_factory.mktemp("cache"), device="cpu")
    report = rollout_speed(backbone, [1, 2], max_new_tokens=6, repeats=2)
    assert [(row.batch_size, row.mode) for row in report.rows] == [(1, "greedy"), (1, "sampled"), (2, "greedy"),
                                                                   (2, "sampled")]
    assert [row.new_tokens for row in report.rows] == [6, 6, 12, 12]
    parameters = sum(p.numel() for p in backbone.model.parameters())
    assert report.parameters == parameters
    assert report.ceiling_tokens_per_s == pytest.approx(report.matmul_flops / (2 * parameters))
    for row in report.rows:
        assert row.ceiling_fraction == pytest.approx(row.tokens_per_s / report.ceiling_tokens_per_s)
        assert row.prefill_s > 0 and row.wall_s > 0  # each the best of its own runs: on a busy machine either order
        decode = (row.new_tokens - row.batch_size) / max(row.wall_s - row.prefill_s, 1e-9)
        assert row.decode_tokens_per_s == pytest.approx(decode)
        assert row.decode_ceiling_fraction == pytest.approx(decode / report.ceiling_tokens_per_s)
    lines = format_report(report)
    assert "ceiling" in lines[1] and len(lines) == 3 + len(report.rows)


def test_ceiling_is_the_best_library() -> None:
    """On CPU in float32 both torch.matmul and oneDNN are timed at each size; the ceiling is the larger."""
    import torch

    flops, kernel = matmul_ceiling(torch.device("cpu"), torch.float32, sizes=(64, 128), seconds=0.05)
    assert flops > 0
    assert kernel in {"torch.matmul 64", "torch.matmul 128", "oneDNN packed 64", "oneDNN packed 128"}


def test_bad_repeats_is_one_line_error(tmp_path_factory: pytest.TempPathFactory) -> None:
    from bench.errors import BenchError

    backbone = load_backbone("tiny", corpus=CORPUS, cache_dir=tmp_path_factory.mktemp("cache"), device="cpu")
    with pytest.raises(BenchError, match="--repeats"):
        rollout_speed(backbone, [1], max_new_tokens=6, repeats=0)
