#!/usr/bin/env bash
# One whole seed of the SmolLM2-on-ReDial table (PROCEDURE.md): the SFT start, then each RL run from it in its own
# `bench matrix` process (a fresh process per RL run: one RL run peaks near 21 GB of this machine's 24 GB), each
# timed by /usr/bin/time for the cost table in README.md. Resumable: `bench matrix` skips finished runs.
# A seed left unfinished: name the runs still missing (the SFT start is rebuilt first when RESULTS_DIR lacks it).
#   usage: run_seed.sh SEED RESULTS_DIR [ALGO ...]   (from the repository root, venv active; BENCH_CACHE anywhere)
set -u
seed=$1
results_dir=$2
shift 2
algos_to_run=("$@")
[ ${#algos_to_run[@]} -gt 0 ] || algos_to_run=(sft grpo rank_grpo rank_grpo+null)
date
for algo in "${algos_to_run[@]}"; do
  echo "SEED $seed RUN $algo"
  if [ "$algo" = sft ]; then algos=sft; else algos="sft,$algo"; fi
  /usr/bin/time -f "wall %e s, peak RSS %M kB" bench matrix --algos "$algos" --models smollm2-135m --dataset redial \
    --preset redial-rl --seeds "$seed" --backend vllm --jobs 1 --results-dir "$results_dir"
  echo "rc $?"
  date
done
echo "SEED $seed DONE"
