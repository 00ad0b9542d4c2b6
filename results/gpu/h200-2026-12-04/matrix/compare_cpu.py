"""GPU bf16 against CPU float32 on the testbed: the same specs (only `dtype` differs, checked), seeds run on each
machine. Seeds do not pair across machines (CUDA and CPU draw different random streams), so each comparison is the
unpaired seed-level permutation test of bench/report/stats.py; the RL gain is per seed (Rank-GRPO minus its own SFT
start), compared the same way. Run from the repository root:
`python results/gpu/h200-2026-12-04/matrix/compare_cpu.py`."""

import json
from pathlib import Path

import numpy as np

from bench.report.stats import p_floor, permutation_p_value, unit_power

GPU = Path("results/gpu/h200-2026-12-04/matrix/runs")
CPU = Path("results/testbed/matrix/runs")
METRIC = "ndcg@20"


def per_seed(runs: Path, algo: str) -> tuple[dict[int, float], dict]:
    """{seed: metric} of the real-reward runs of `algo`, and one spec without seed and dtype (to compare)."""
    values, spec = {}, {}
    for folder in sorted(runs.glob(f"{algo}-tiny-synthetic_testbed-testbed_rl-s*")):
        run_spec = json.loads((folder / "spec.json").read_text())
        if run_spec.get("reward_signal", "real") != "real":
            continue
        values[run_spec["seed"]] = json.loads((folder / "metrics.json").read_text())[METRIC]
        spec = {key: value for key, value in run_spec.items() if key not in ("seed", "dtype")}
    return values, spec


def compare(name: str, gpu: np.ndarray, cpu: np.ndarray) -> None:
    p = permutation_p_value(cpu, gpu, paired=False)
    mdd = unit_power(cpu, gpu, paired=False)
    print(f"{name:<22} GPU {gpu.mean():.4f} (sd {gpu.std(ddof=1):.4f}, n {gpu.size})  CPU {cpu.mean():.4f} "
          f"(sd {cpu.std(ddof=1):.4f}, n {cpu.size})  GPU - CPU {gpu.mean() - cpu.mean():+.4f}  p {p:.4f} "
          f"(floor {p_floor(cpu.size, gpu.size, False):.5f}; MDD at {mdd.n} + {mdd.n}: {mdd.mdd():.4f})")


def main() -> None:
    runs = {}
    for algo in ("sft", "rank_grpo"):
        gpu, gpu_spec = per_seed(GPU, algo)
        cpu, cpu_spec = per_seed(CPU, algo)
        if gpu_spec != cpu_spec:
            raise SystemExit(f"{algo}: the GPU and CPU specs differ beyond seed and dtype")
        runs[algo] = (gpu, cpu)
        compare(f"{algo} {METRIC}", np.array(list(gpu.values())), np.array(list(cpu.values())))
    gains = []
    for machine in (0, 1):
        sft, rl = runs["sft"][machine], runs["rank_grpo"][machine]
        gains.append(np.array([rl[seed] - sft[seed] for seed in sorted(rl) if seed in sft]))
    compare("Rank-GRPO - SFT", gains[0], gains[1])


if __name__ == "__main__":
    main()
