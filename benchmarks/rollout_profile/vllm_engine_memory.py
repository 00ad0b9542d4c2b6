"""Resident memory of vLLM engines started one after another in one process (docs/vllm.md, "Engines and memory").

`keep`: three shared tiny-m engines (three contexts, so three engines), as runs that follow each other in one
process would hold them without `released_engines`; `release`: each started inside `released_engines`, as a run
does. Prints the resident memory after each. Run: `python benchmarks/rollout_profile/vllm_engine_memory.py
keep|release` (one mode per process: the first engine's start-up cost is in both).
"""

import os
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

from bench.models.backbones import load_backbone
from bench.models.sampling import SamplingSettings
from bench.models.vllm_backend import VLLMEngine, released_engines

CORPUS = [f"I liked Movie {index} ({1950 + index % 70})." for index in range(80)]


def resident_gib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def main(mode: str) -> None:
    if mode not in ("keep", "release"):
        raise SystemExit(f"mode must be keep or release, got {mode!r}")
    os.environ["BENCH_VLLM_EAGER"] = "1"
    with tempfile.TemporaryDirectory() as cache:
        backbone = load_backbone("tiny-m", corpus=CORPUS, cache_dir=Path(cache), device="cpu")
        print(f"start {resident_gib():.2f} GiB", flush=True)
        for index in range(3):
            with released_engines() if mode == "release" else nullcontext():
                engine = VLLMEngine(backbone, progress=False, max_model_len=512 + index)
                engine.generate([[{"role": "user", "content": "hi"}]], SamplingSettings(max_new_tokens=4), seed=0)
                del engine
            print(f"after engine {index} ({mode}) {resident_gib():.2f} GiB", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "release")
