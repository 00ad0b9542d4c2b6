"""The CUDA precision paths of SFT emulated on the 2-core CPU, to tell which part of bf16 cost the H200 runs their
NDCG@20 (README.md beside this file). Every mode decodes in bf16 (`--dtype bfloat16`, as CUDA runs do) and runs
`bench matrix --algos sft --models tiny --dataset synthetic:testbed --preset testbed-rl` for the seeds given:

- `decode`: float32 weights and float32 compute (the code as it is on CPU): only decoding is bf16;
- `mixed`: float32 weights under bf16 autocast (`bf16=True` on CPU): the CUDA path since the fix; with
  `BENCH_ONEDNN=0`, since the suite's packed float32 oneDNN linears for CPU decoding take no bf16 input (the
  validation decodes inside the trainer's autocast) and CUDA never uses them;
- `pure`: bf16 weights and bf16 compute (`TRAIN_DTYPE` patched to bfloat16): the CUDA path before the fix.

Run from the repository root, one mode per process:
`python results/gpu/h200-2026-12-04/matrix/cpu_precision.py MODE SEEDS RESULTS_DIR` (SEEDS as `0,1,2,3`)."""

import os
import sys
from typing import Any

import algorithms.training
from cli import app

MODES = ("decode", "mixed", "pure")


def main(mode: str, seeds: str, results_dir: str) -> None:
    if mode not in MODES:
        raise SystemExit(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "mixed":
        os.environ["BENCH_ONEDNN"] = "0"
        plain = algorithms.training.device_arguments

        def autocast_on_cpu(*args: Any, **kwargs: Any) -> dict[str, Any]:
            return plain(*args, **kwargs) | {"bf16": True}

        algorithms.training.device_arguments = autocast_on_cpu
    if mode == "pure":
        algorithms.training.TRAIN_DTYPE = "bfloat16"
    app(["matrix", "--algos", "sft", "--models", "tiny", "--dataset", "synthetic:testbed", "--preset", "testbed-rl",
         "--seeds", seeds, "--dtype", "bfloat16", "--jobs", "1", "--results-dir", results_dir])


if __name__ == "__main__":
    main(*sys.argv[1:4])
