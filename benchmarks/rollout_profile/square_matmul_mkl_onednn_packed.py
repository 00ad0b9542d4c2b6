import time, torch
torch.set_num_threads(2)
def bench(fn, sec=2):
    for _ in range(2): fn()
    n=0; t=time.perf_counter()
    while time.perf_counter()-t<sec: fn(); n+=1
    return (time.perf_counter()-t)/n
for S in (1024,2048,4096,6144):
    a=torch.randn(S,S); b=torch.randn(S,S); pk=torch.ops.mkldnn._reorder_linear_weight(b)
    f=2*S**3
    print(S, "mkl", round(f/bench(lambda: a@b)/1e9), "onednn packed", round(f/bench(lambda: torch.ops.mkldnn._linear_pointwise(a, pk, None, "none", [], ""))/1e9))
