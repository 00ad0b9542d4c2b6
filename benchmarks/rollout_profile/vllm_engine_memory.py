"""Memory of vLLM engines started one after another in one process (docs/vllm.md, "Engines and memory").

`keep`: three shared tiny-m engines (different contexts, so three engines), as consecutive runs in one process held
them before `released_engines`; `release`: each started inside `released_engines`, as a run now does. Prints the
resident memory after each. Run: `.venv/bin/python benchmarks/rollout_profile/vllm_engine_memory.py keep|release`.
"""
import os, resource, sys
os.environ["BENCH_VLLM_EAGER"] = "1"
from pathlib import Path
from bench.models.backbones import load_backbone
from bench.models.vllm_backend import VLLMEngine, released_engines
from bench.models.sampling import SamplingSettings
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
corpus = [f"I liked Movie {i} ({1950 + i % 70})." for i in range(80)]
bb = load_backbone("tiny-m", corpus=corpus, cache_dir=Path("/tmp/rsscache"), device="cpu")
release = sys.argv[1] == "release"
print("start", round(rss(), 2), "GiB", flush=True)
for i in range(3):
    if release:
        with released_engines():
            e = VLLMEngine(bb, progress=False, max_model_len=512 + i)
            e.generate([[{"role": "user", "content": "hi"}]], SamplingSettings(max_new_tokens=4), seed=0)
            del e
    else:
        e = VLLMEngine(bb, progress=False, max_model_len=512 + i)
        e.generate([[{"role": "user", "content": "hi"}]], SamplingSettings(max_new_tokens=4), seed=0)
        del e
    print("after engine", i, round(rss(), 2), "GiB", flush=True)
