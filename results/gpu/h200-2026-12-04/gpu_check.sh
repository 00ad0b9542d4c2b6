#!/bin/bash
# One device call: GPU tests, bf16 rollout throughput at a real size, and one whole testbed run on CUDA.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 BENCH_CACHE=/tmp/cache TOKENIZERS_PARALLELISM=false
cd "$PWD"
{ nvidia-smi -L; python3 -c "import torch,transformers,trl,datasets,pyarrow,peft,accelerate;print('torch',torch.__version__,'transformers',transformers.__version__,'trl',trl.__version__,'datasets',datasets.__version__,'pyarrow',pyarrow.__version__,'peft',peft.__version__,'accelerate',accelerate.__version__)"; } 2>&1 | tee $OUT/env.log
date +%s > $OUT/t0
timeout 200 python3 -m pytest -m gpu tests/gpu -v -s -p no:cacheprovider -rs 2>&1 | tee $OUT/pytest-gpu.log
date +%s >> $OUT/t0
timeout 90 python3 cli.py bench rollout --model qwen2.5-0.5b --random-init --dtype bfloat16 --backend transformers --batch-sizes 1,16,64 --repeats 1 --dataset synthetic 2>&1 | tee $OUT/rollout-qwen05b-bf16.log
date +%s >> $OUT/t0
timeout 240 python3 cli.py run --algo rank_grpo --model tiny --dataset synthetic:testbed --preset testbed-rl --seed 0 --results-dir /tmp/runs 2>&1 | tee $OUT/run-rank_grpo-testbed-s0.log | grep -v "it/s\]\|s/it\]" | tail -40
date +%s >> $OUT/t0
cd /tmp/runs && tar czf $OUT/runs.tgz --exclude='*.safetensors' --exclude='*.bin' --exclude='*.pt' --exclude='checkpoint*' . 2>/dev/null; ls -la $OUT
