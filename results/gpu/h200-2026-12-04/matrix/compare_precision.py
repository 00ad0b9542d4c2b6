"""SFT NDCG@20 of the testbed by precision path, paired by seed against the committed CPU float32 runs
(results/testbed/matrix/runs): the three CPU emulations of cpu_precision.py (records in cpu-precision/MODE/runs), on
every seed each has. On the CPU every path draws the same random numbers for a seed, so a pair differs only by
precision (the H200's runs draw others: compare_cpu.py tests them unpaired). Run from the repository root:
`python results/gpu/h200-2026-12-04/matrix/compare_precision.py`."""

import json
from pathlib import Path

import numpy as np

from bench.report.stats import p_floor, permutation_p_value

HERE = Path("results/gpu/h200-2026-12-04/matrix")
REFERENCE = Path("results/testbed/matrix/runs")
ARMS = {"CPU bf16 decoding only (decode)": HERE / "cpu-precision/decode/runs",
        "CPU float32 weights, bf16 autocast (mixed)": HERE / "cpu-precision/mixed/runs",
        "CPU bf16 weights and compute (pure)": HERE / "cpu-precision/pure/runs"}


def sft_ndcg(runs: Path) -> dict[int, float]:
    """{seed: test NDCG@20} of the SFT runs in `runs`."""
    values = {}
    for folder in runs.glob("sft-tiny-synthetic_testbed-testbed_rl-s*"):
        spec = json.loads((folder / "spec.json").read_text())
        values[spec["seed"]] = json.loads((folder / "metrics.json").read_text())["ndcg@20"]
    return values


def main() -> None:
    reference = sft_ndcg(REFERENCE)
    print(f"{'path':<44} {'seeds':<12} {'mean':>7} {'float32':>8} {'diff':>8}  {'lower on':<9} sign-flip p (floor)")
    for name, runs in ARMS.items():
        found = sft_ndcg(runs)
        seeds = sorted(found)
        values, paired = np.array([found[s] for s in seeds]), np.array([reference[s] for s in seeds])
        p = permutation_p_value(paired, values, paired=True)
        lower = int((values < paired).sum())
        floor = p_floor(len(seeds), len(seeds), True)
        print(f"{name:<44} {','.join(map(str, seeds)):<12} {values.mean():>7.4f} {paired.mean():>8.4f} "
              f"{values.mean() - paired.mean():>+8.4f}  {lower} of {len(seeds):<4} {p:.3f} ({floor:.3f})")


if __name__ == "__main__":
    main()
