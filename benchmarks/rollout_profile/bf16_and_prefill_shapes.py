import time, torch
torch.set_num_threads(2)
def bench(fn, n=20):
    for _ in range(3): fn()
    t=time.perf_counter()
    for _ in range(n): fn()
    return (time.perf_counter()-t)/n
for dt in (torch.float32, torch.bfloat16):
    for S in (1024, 2048):
        a=torch.randn(S,S,dtype=dt); b=torch.randn(S,S,dtype=dt); bd=b.to_mkldnn()
        f=2*S**3
        print(dt, S, "mkl @", round(f/bench(lambda: a@b)/1e9), "onednn", round(f/bench(lambda: torch._C._nn.mkldnn_linear(a.to_mkldnn(), bd, None).to_dense())/1e9))
    x=torch.randn(32,99,576,dtype=dt); w=torch.randn(1536,576,dtype=dt); wd=w.to_mkldnn()
    f=2*32*99*576*1536
    print(dt,"prefill 3D", round(f/bench(lambda: torch.nn.functional.linear(x,w))/1e9), round(f/bench(lambda: torch._C._nn.mkldnn_linear(x.to_mkldnn(), wd, None).to_dense())/1e9))
    y=torch._C._nn.mkldnn_linear(x.to_mkldnn(), wd, None).to_dense(); print((y-torch.nn.functional.linear(x,w)).abs().max().item(), y.shape)
