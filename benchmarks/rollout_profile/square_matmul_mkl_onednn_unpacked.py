import time, torch
torch.set_num_threads(2)
def bench(fn, sec=1.5):
    for _ in range(2): fn()
    n=0; t=time.perf_counter()
    while time.perf_counter()-t<sec: fn(); n+=1
    return (time.perf_counter()-t)/n
for S in (512,1024,2048,3072,4096):
    a=torch.randn(S,S); b=torch.randn(S,S); bd=b.to_mkldnn()
    f=2*S**3
    print(S, "mkl", round(f/bench(lambda: a@b)/1e9), "onednn", round(f/bench(lambda: torch._C._nn.mkldnn_linear(a.to_mkldnn(), bd, None).to_dense())/1e9))
