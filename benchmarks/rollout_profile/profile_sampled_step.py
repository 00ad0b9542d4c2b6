import time, torch, sys
from torch.profiler import profile, ProfilerActivity
from bench.models.backbones import load_backbone
from bench.models.rollouts import TransformersEngine, throughput_prompts
from bench.models.sampling import SamplingSettings
B=int(sys.argv[1])
bb = load_backbone("smollm2-135m")
eng = TransformersEngine(bb, batch_size=B, progress=False)
prompts = throughput_prompts(B)
eng.generate(prompts, SamplingSettings(max_new_tokens=4, temperature=0.0, ignore_eos=True), 0)
def run(n):
    with profile(activities=[ProfilerActivity.CPU]) as p:
        t=time.perf_counter()
        eng.generate(prompts, SamplingSettings(max_new_tokens=n, temperature=1.0, ignore_eos=True), 0)
        w=time.perf_counter()-t
    return {e.key: (e.self_cpu_time_total, e.count) for e in p.key_averages()}, w
(a,wa)=run(1); (b,wb)=run(65)
d={k: ((b[k][0]-a.get(k,(0,0))[0])/64/1000, (b[k][1]-a.get(k,(0,0))[1])/64) for k in b}
for k,v in sorted(d.items(), key=lambda kv:-kv[1][0])[:14]: print(f"{k:60s} {v[0]:8.2f} ms/step {v[1]:6.0f} calls")
print("ops total", sum(v[0] for v in d.values()), "wall per step", (wb-wa)/64*1000)
