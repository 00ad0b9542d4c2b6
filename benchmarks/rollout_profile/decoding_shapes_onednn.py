import time, torch
torch.set_num_threads(2)
def bench(fn, n=200):
    for _ in range(5): fn()
    t=time.perf_counter()
    for _ in range(n): fn()
    return (time.perf_counter()-t)/n
try:
    r=torch.ops.mkldnn._reorder_linear_weight; print(r.default._schema)
except Exception as e: print("no reorder", e); r=None
for (k,n) in [(576,576),(576,1536),(1536,576),(576,49152)]:
    x=torch.randn(32,1,k); w=torch.randn(n,k)
    f=2*32*k*n; N=30 if n>10000 else 200
    wd=w.to_mkldnn()
    a=f/bench(lambda: torch._C._nn.mkldnn_linear(x.to_mkldnn(), wd, None).to_dense(),N)/1e9
    res=[]
    for name,W in (("mkldnn-w", wd), ("packed32", r(w,32) if r else None), ("packed", r(w) if r else None)):
        if W is None: continue
        try:
            b=f/bench(lambda: torch.ops.mkldnn._linear_pointwise(x, W, None, "none", [], ""),N)/1e9
            y=torch.ops.mkldnn._linear_pointwise(x, W, None, "none", [], "")
            res.append(f"{name} {b:.0f} err {(y-torch.nn.functional.linear(x,w)).abs().max().item():.1e}")
        except Exception as e: res.append(f"{name} fail {str(e)[:60]}")
    print(k,n, f"mkldnn_linear {a:.0f}", res)
