#!/bin/bash
# One device call: the testbed's SFT and Rank-GRPO, seeds 0-5, as one `bench matrix --jobs 6` on one GPU (bf16),
# to pair with the committed CPU float32 seeds (results/testbed/matrix/runs) and to run the matrix launcher on CUDA.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 BENCH_CACHE=/tmp/cache TOKENIZERS_PARALLELISM=false
{ nvidia-smi -L; nproc; python3 -c "import torch,transformers,trl;print('torch',torch.__version__,'transformers',transformers.__version__,'trl',trl.__version__)"; } 2>&1 | tee $OUT/env.log
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > $OUT/smi.csv 2>&1 &
date +%s > $OUT/t0
timeout 480 python3 cli.py matrix --algos sft,rank_grpo --models tiny --dataset synthetic:testbed --preset testbed-rl --seeds 0,1,2,3,4,5 --jobs 6 --results-dir /tmp/runs 2>&1 | grep -v "it/s\]\|s/it\]" > $OUT/matrix.log
date +%s >> $OUT/t0
kill %1
python3 cli.py records --results-dir /tmp/runs --out /tmp/rec > $OUT/records.log 2>&1
cd /tmp/rec && tar czf $OUT/records.tgz . ; ls -la $OUT; tail -5 $OUT/matrix.log
