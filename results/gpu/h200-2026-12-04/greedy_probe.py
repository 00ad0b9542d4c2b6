"""Why greedy decoding is ~3x slower than sampling on CUDA (bench bench rollout on H200): time both through the
suite's engine and through bare model.generate, alternating order, then profile one call of each."""
import time
import torch
from bench.models.backbones import load_backbone
from bench.models.rollouts import make_engine, throughput_prompts
from bench.models.sampling import SamplingSettings

CORPUS = [f"I liked Movie {i} ({1950 + i % 70}).\nRecommend ten titles." for i in range(80)]
bb = load_backbone("qwen2.5-0.5b", corpus=CORPUS, cache_dir=__import__("pathlib").Path("/tmp/probe"), device="cuda", random_init=True)
engine = make_engine("transformers", bb, batch_size=16, progress=False)
prompts = throughput_prompts(16)
greedy = SamplingSettings(max_new_tokens=64, temperature=0.0, ignore_eos=True)
sampled = SamplingSettings(max_new_tokens=64, temperature=1.0, ignore_eos=True)
print("greedy flag", greedy.greedy, sampled.greedy)
def timed(settings, label):
    torch.cuda.synchronize(); t = time.perf_counter()
    engine.generate(prompts, settings, seed=0)
    torch.cuda.synchronize(); print(f"engine {label}: {time.perf_counter() - t:.2f} s", flush=True)
for s, l in [(sampled, "sampled"), (greedy, "greedy"), (sampled, "sampled"), (greedy, "greedy")]:
    timed(s, l)
ids = torch.randint(0, 1000, (16, 40), device="cuda")
for sample in (True, False, True, False):
    torch.cuda.synchronize(); t = time.perf_counter()
    with torch.inference_mode():
        bb.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=64, min_new_tokens=64,
                          do_sample=sample, pad_token_id=0)
    torch.cuda.synchronize(); print(f"bare generate do_sample={sample}: {time.perf_counter() - t:.2f} s", flush=True)
from torch.profiler import profile, ProfilerActivity
for s, l in [(greedy, "greedy"), (sampled, "sampled")]:
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        engine.generate(prompts, s, seed=0); torch.cuda.synchronize()
    print("=== profile", l)
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=18, max_name_column_width=60))
