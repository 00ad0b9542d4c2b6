import time, torch, sys
from torch.profiler import profile, ProfilerActivity
from bench.models.backbones import load_backbone
from bench.models.rollouts import TransformersEngine, throughput_prompts
from bench.models.sampling import SamplingSettings
bb = load_backbone("smollm2-135m")
eng = TransformersEngine(bb, batch_size=32, progress=False)
prompts = throughput_prompts(32)
eng.generate(prompts, SamplingSettings(max_new_tokens=4, temperature=0.0, ignore_eos=True), 0)
def run(n):
    with profile(activities=[ProfilerActivity.CPU]) as p:
        eng.generate(prompts, SamplingSettings(max_new_tokens=n, temperature=0.0, ignore_eos=True), 0)
    return {e.key: e.self_cpu_time_total for e in p.key_averages()}
a=run(1); b=run(65)
d={k: (b.get(k,0)-a.get(k,0))/64/1000 for k in b}
tot=sum(d.values())
for k,v in sorted(d.items(), key=lambda kv:-kv[1])[:20]: print(f"{k:60s} {v:8.2f} ms/step")
print("total", tot)
