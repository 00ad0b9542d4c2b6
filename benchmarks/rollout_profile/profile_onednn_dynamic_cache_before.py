import time, torch, sys
from torch.profiler import profile, ProfilerActivity
from bench.models.backbones import load_backbone
from bench.models.rollouts import TransformersEngine, throughput_prompts
from bench.models.sampling import SamplingSettings
bb = load_backbone("smollm2-135m")
for m in bb.model.modules():
    if isinstance(m, torch.nn.Linear):
        wd = torch.ops.mkldnn._reorder_linear_weight(m.weight.detach())
        def fwd(x, wd=wd): return torch.ops.mkldnn._linear_pointwise(x, wd, None, "none", [], "")
        m.forward = fwd
eng = TransformersEngine(bb, batch_size=32, progress=False)
orig=eng._generation_config
def gc(*a, **k):
    g=orig(*a, **k); g.cache_implementation=sys.argv[1]; return g
eng._generation_config=gc
prompts = throughput_prompts(32)
eng.generate(prompts, SamplingSettings(max_new_tokens=4, temperature=0.0, ignore_eos=True), 0)
def run(n):
    with profile(activities=[ProfilerActivity.CPU]) as p:
        eng.generate(prompts, SamplingSettings(max_new_tokens=n, temperature=0.0, ignore_eos=True), 0)
    return {e.key: (e.self_cpu_time_total, e.count) for e in p.key_averages()}
a=run(1); b=run(65)
d={k: ((b[k][0]-a.get(k,(0,0))[0])/64/1000, (b[k][1]-a.get(k,(0,0))[1])/64) for k in b}
for k,v in sorted(d.items(), key=lambda kv:-kv[1][0])[:22]: print(f"{k:60s} {v[0]:8.2f} ms/step {v[1]:6.0f} calls")
print("total", sum(v[0] for v in d.values()))
