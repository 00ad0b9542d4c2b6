"""Child process of tests/integration/test_vllm.py: two runs' worth of vLLM engines in a fresh process, each built
inside `released_engines` as a run builds them. A fresh process is the point: the first engine of a process is the
one whose start imports vLLM's lazy modules (`LAZY_ENGINE_MODULES`), which pinned it for good before they were
imported on a thread of their own. Prints one JSON line: engines still alive and shared after both blocks.
Argument: a cache directory for the tiny-m backbone."""

import json
import os
import sys
from pathlib import Path

from bench.models import vllm_backend
from bench.models.backbones import load_backbone
from bench.models.sampling import SamplingSettings

CORPUS = [f"I liked Movie {index} ({1950 + index % 70})." for index in range(80)]


def main(cache_dir: Path) -> None:
    os.environ["BENCH_VLLM_EAGER"] = "1"
    backbone = load_backbone("tiny-m", corpus=CORPUS, cache_dir=cache_dir, device="cpu")
    for context in (512, 513):
        with vllm_backend.released_engines():
            engine = vllm_backend.VLLMEngine(backbone, progress=False, max_model_len=context)
            engine.generate([[{"role": "user", "content": "hi"}]], SamplingSettings(max_new_tokens=4), seed=0)
            del engine  # as a run's engines are its own: nothing refers to them once it ends
    print(json.dumps({"live": len(vllm_backend._LIVE), "shared": len(vllm_backend._SHARED)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
