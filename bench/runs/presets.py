"""Named presets: how big a run is. `smoke` (a minute or two on a laptop CPU, for tests), `default` (a real tiny
run on a CPU in minutes), `paper` (the authors' released configuration for GPU runs; Rank-GRPO, arXiv 2510.20150).

Every field can be overridden from the CLI; the resolved values are written to the run's spec.json
(`bench run ... --dry-run` prints them).

Where the `paper` values come from (github.com/yaochenzhu/Rank-GRPO, HEAD 0808d82; README.MD is its README):
- RL lr 1e-6 constant for Qwen2.5-0.5B: train_rank_grpo.py:60 (`--lr` default 1e-6), :131 (schedule
  `[(8000, 1e-6)]` "constant for Qwen2.5-0.5B"; Llama drops to 1e-7 from step 8000, :133), :156 (`constant`).
- adam betas (0.9, 0.99): train_rank_grpo.py:61-62, README.MD:110-111. Optimizer paged_adamw_8bit:
  train_rank_grpo.py:65 (RL), train_sft.py:38 (SFT; betas left at the HF default (0.9, 0.999)).
- KL beta 1e-3: train_rank_grpo.py:63, README.MD:109. Clip 0.06/0.08: train_rank_grpo.py:142-143 (see CLIPPING).
- G = 8: train_rank_grpo.py:76, README.MD:125. Temperature 1.0: not set in train_rank_grpo.py:137-167, so TRL
  0.21's GRPOConfig default (README.MD:27 pins trl 0.21.0).
- 48 prompts per step: 16 completions per device (README.MD:112) x 6 accumulation steps (README.MD:115,
  configs/qwen25_0.5b_grpo.yaml:4) x 4 processes (configs/qwen25_0.5b_grpo.yaml:17) = 384 completions / G 8.
  `rl_micro_batch` 16 keeps the per-device forward size and reaches 384 by gradient accumulation on fewer GPUs.
- 1,024 completion tokens, 2,048 prompt tokens: train_rank_grpo.py:74-75, README.MD:123-124.
- 2 epochs of the training split: train_rank_grpo.py:70, README.MD:114 (steps derived from its size at spec time;
  the README evaluates checkpoint 15800, README.MD:176). mu 1: train_rank_grpo.py:71, README.MD:107.
- N = 20: train_rank_grpo.py:117,119 (`rec_num=20`).
- SFT lr 5e-5, cosine, 5% warm-up, 10 epochs: train_sft.py:36-39,42 and README.MD:81-83. Global batch 192: 12 per
  device (README.MD:84) x 8 accumulation (README.MD:86, configs/qwen25_0.5b_sft.yaml:4) x 2 processes
  (configs/qwen25_0.5b_sft.yaml:17). Validation every 10 steps (README.MD:90-91); the RL start is checkpoint 1500
  (train_rank_grpo.py:40, README.MD:105), picked from validation Recall/NDCG per checkpoint
  (evaluate/eval_sft_val.py:74-146); here the SFT checkpoint with the best validation NDCG@20 is kept
  (`algorithms.sft`).
- Prompt budget 2,048 also for SFT: its max_length is 1,024 (train_sft.py:47) for prompt and completion together;
  we trim prompts to `max_prompt_tokens` and add `max_new_tokens`.
"""

import importlib.util
from dataclasses import dataclass

from bench.errors import UnknownNameError


@dataclass(frozen=True)
class Preset:
    """Sizes and hyper-parameters shared by all methods of a run."""

    name: str
    eval_limit: int | None
    """Examples of the evaluation split scored (None: all)."""
    max_new_tokens: int
    eval_batch_size: int
    sft_epochs: float
    sft_max_steps: int | None
    """Caps SFT steps (None: `sft_epochs` full passes)."""
    sft_lr: float
    sft_batch_size: int
    """Global SFT batch (examples per optimizer step over all processes)."""
    rl_steps: int | None
    """Optimizer steps of RL; None: derived from `rl_epochs` and the training split at spec time."""
    rl_lr: float
    num_generations: int
    prompts_per_step: int
    beta: float
    temperature: float
    mu: int
    eval_interval: int
    validation_size: int
    """Distinct validation prompts SFT picks its checkpoint on, and as many more, disjoint, that RL curves are drawn
    on (`algorithms.training.validation_subsets`)."""
    max_prompt_tokens: int
    """Prompts longer than this keep their instruction and the most recent dialogue (trimmed in preprocessing)."""
    rl_epochs: float | None = None
    """Passes over the training split that `rl_steps` is derived from (paper: 2); None when steps are given."""
    rl_micro_batch: int | None = None
    """Completions per process per forward pass; a step's prompts_per_step x G completions are reached by gradient
    accumulation (None: the whole step in one pass)."""
    rl_adam_beta2: float = 0.999
    """Adam beta2 of RL (beta1 is 0.9 everywhere); 0.999 is the transformers default."""
    optim: str = "adamw_torch"
    """transformers optimizer name for SFT and RL; `paged_adamw_8bit` falls back to `adamw_torch` at spec time
    where bitsandbytes is not importable (`resolve_optimizer`)."""
    sft_micro_batch: int | None = None
    """Examples per process per forward pass of SFT (None: the whole global batch)."""
    sft_warmup_ratio: float = 0.05
    """Linear warm-up as a fraction of the SFT steps, then cosine decay (train_sft.py:37,39)."""
    rl_lr_scheduler: str = "constant"
    """Learning-rate schedule of RL after the warm-up: one of LR_SCHEDULES (the authors: constant,
    train_rank_grpo.py:156)."""
    rl_warmup_ratio: float = 0.0
    """Linear warm-up of the RL learning rate as a fraction of the RL steps (the authors: none)."""


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        "smoke", eval_limit=24, max_new_tokens=48, eval_batch_size=8,
        sft_epochs=1.0, sft_max_steps=12, sft_lr=1e-3, sft_batch_size=8,
        rl_steps=3, rl_lr=1e-4, num_generations=4, prompts_per_step=2, beta=0.0, temperature=1.0, mu=1,
        eval_interval=2, validation_size=8, max_prompt_tokens=256),
    "default": Preset(
        "default", eval_limit=None, max_new_tokens=256, eval_batch_size=32,
        sft_epochs=10.0, sft_max_steps=400, sft_lr=2e-3, sft_batch_size=16,
        rl_steps=100, rl_lr=1e-4, num_generations=8, prompts_per_step=4, beta=0.0, temperature=1.0, mu=1,
        eval_interval=20, validation_size=64, max_prompt_tokens=384),
    "cpu-small": Preset(
        "cpu-small", eval_limit=50, max_new_tokens=160, eval_batch_size=32,
        sft_epochs=1.0, sft_max_steps=40, sft_lr=1e-4, sft_batch_size=4,
        rl_steps=16, rl_lr=1e-5, num_generations=4, prompts_per_step=2, beta=0.0, temperature=1.0, mu=1,
        eval_interval=10, validation_size=8, max_prompt_tokens=256),
    "testbed": Preset(
        "testbed", eval_limit=None, max_new_tokens=192, eval_batch_size=32,
        sft_epochs=10.0, sft_max_steps=300, sft_lr=3e-3, sft_batch_size=16,
        rl_steps=80, rl_lr=1e-5, num_generations=8, prompts_per_step=4, beta=0.0, temperature=0.3, mu=1,
        eval_interval=20, validation_size=200, max_prompt_tokens=256),
    "testbed-rl": Preset(
        "testbed-rl", eval_limit=None, max_new_tokens=192, eval_batch_size=32,
        sft_epochs=10.0, sft_max_steps=300, sft_lr=3e-3, sft_batch_size=16,
        rl_steps=80, rl_lr=1e-4, num_generations=8, prompts_per_step=16, beta=0.0, temperature=0.3, mu=1,
        eval_interval=20, validation_size=200, max_prompt_tokens=256),
    "redial-rl": Preset(
        "redial-rl", eval_limit=200, max_new_tokens=160, eval_batch_size=32,
        sft_epochs=1.0, sft_max_steps=300, sft_lr=1e-4, sft_batch_size=4,
        rl_steps=16, rl_lr=1e-5, num_generations=8, prompts_per_step=2, beta=0.0, temperature=1.0, mu=1,
        eval_interval=10, validation_size=8, max_prompt_tokens=256),
    "paper": Preset(
        "paper", eval_limit=None, max_new_tokens=1024, eval_batch_size=64,
        sft_epochs=10.0, sft_max_steps=None, sft_lr=5e-5, sft_batch_size=192,
        rl_steps=None, rl_lr=1e-6, num_generations=8, prompts_per_step=48, beta=1e-3, temperature=1.0, mu=1,
        eval_interval=200, validation_size=512, max_prompt_tokens=2048,
        rl_epochs=2.0, rl_micro_batch=16, rl_adam_beta2=0.99, optim="paged_adamw_8bit", sft_micro_batch=12,
        sft_warmup_ratio=0.05),
}
"""`cpu-small` is sized for a real ~135M backbone (smollm2-135m) on a 2-core CPU: SFT then one RL method on ReDial,
with their evaluations, in about an hour (README "A real pretrained backbone"). 160 new tokens hold a 20-item list
(~7 tokens a line). Measured on the 2-core machine (2026-12-02, other single-thread jobs running): a full
fine-tuning step of 8 x ~420 tokens took ~50 s, so SFT takes 4 examples a step (40 steps; 15-26 s each measured) and
RL 16 steps of 2 prompts x G=4 (generation plus one 8-sequence update; 84 s for the first); README "A real
pretrained backbone" has the measured total.

`testbed` is the calibrated CPU testbed for the tiny backbone on `synthetic:testbed` (results/testbed/low-budget/README.md):
the SFT of the regression check (300 steps of 16 at lr 3e-3), then 80 RL steps of 4 prompts x G=8, every method
alike, at the temperature (0.3) and learning rate (1e-5) that `bench calibrate`'s rules chose from SFT starts and
null controls on calibration seeds 100-102 (results/testbed/low-budget/PROCEDURE.md, results/calibration/); greedy evaluation
of the 200 test examples.

`testbed-rl` is the paper-regime testbed (results/testbed/PROCEDURE.md): the same task, backbone and SFT, and an RL
budget of 80 steps x 16 prompts x G 8 = 10,240 sampled completions per run (a compute rule: the largest batch at
which a 10-seed matrix of four RL runs per seed fits about two hours of a 2-core CPU), at the temperature and
learning rate its rules B and C choose on calibration seeds 100-102 (results/testbed/README.md).

`redial-rl` is the seeded SmolLM2-135M table on ReDial (results/redial_smollm2/PROCEDURE.md, issue 27): `cpu-small`'s
sizes with the first 200 test prompts, G 8, and the SFT start and rollout temperature its rules S and T chose on
calibration seed 100 (results/redial_smollm2/calibration/README.md): full fine-tuning, 300 steps of 4 at lr 1e-4
(the candidate with the fewest tied groups; none reached the 30% target), T 1.0 (no temperature qualified). Run it
with `--backend vllm`.

`paper` eval_interval 200 is the authors' checkpoint interval (train_rank_grpo.py:96, README.MD:117) at which
they validate RL (evaluate/eval_grpo_val.py `--step_interval 200`, README.MD:163)."""


@dataclass(frozen=True)
class Clipping:
    """Clip range of the importance ratio, 1 - low .. 1 + high, and where the values come from."""

    low: float
    high: float
    source: str


CLIPPING: dict[str, Clipping] = {
    "grpo": Clipping(0.2, 0.2, "TRL GRPOConfig default epsilon 0.2, epsilon_high = epsilon"),
    "gspo": Clipping(3e-4, 4e-4, "GSPO paper (Zheng et al. 2025, arXiv 2507.18071 v2, Sec. 5.1), for the "
                                 "sequence-level ratio"),
    "rank_grpo": Clipping(0.06, 0.08, "authors' train_rank_grpo.py:142-143 (epsilon=0.06, epsilon_high=0.08)"),
}
"""Per-method clipping, overridable with `--epsilon-low/--epsilon-high`; the resolved values go to spec.json."""

LOSS_TYPES = ("bnpo", "grpo", "dr_grpo", "dapo")
DEFAULT_LOSS_TYPE = "bnpo"
"""Token aggregation of GRPO and Rank-GRPO: the authors ran TRL 0.21 (README.MD:27) without setting `loss_type`
(train_rank_grpo.py:137-167), so TRL 0.21's default `bnpo` (token mean over the batch); TRL 1.16 defaults to
`dapo`. GSPO keeps `grpo` (per-sequence mean): its ratio is one per sequence, so the per-sequence mean of the token
losses is the GSPO objective (1/G) sum_i min(s_i A_i, clip(s_i) A_i) (TRL's documented GSPO setting)."""
GSPO_LOSS_TYPE = "grpo"


LR_SCHEDULES = ("constant", "linear", "cosine")
"""RL learning-rate schedules after the warm-up (transformers scheduler names; `constant` with a warm-up is
transformers' `constant_with_warmup`)."""


def transformers_scheduler(schedule: str, warmup_ratio: float) -> str:
    """The transformers `lr_scheduler_type` of an RL schedule: `constant` becomes `constant_with_warmup` when there is
    a warm-up (transformers' `constant` ignores warm-up steps)."""
    if schedule not in LR_SCHEDULES:
        raise UnknownNameError("learning-rate schedule", schedule, list(LR_SCHEDULES))
    return "constant_with_warmup" if schedule == "constant" and warmup_ratio > 0 else schedule


def resolve_optimizer(name: str) -> str:
    """`paged_adamw_8bit` where bitsandbytes is importable, else `adamw_torch` (same betas); other names as given."""
    if name == "paged_adamw_8bit" and importlib.util.find_spec("bitsandbytes") is None:
        return "adamw_torch"
    return name


def get_preset(name: str) -> Preset:
    """A preset by name, with a did-you-mean error for unknown names."""
    if name not in PRESETS:
        raise UnknownNameError("preset", name, list(PRESETS))
    return PRESETS[name]
