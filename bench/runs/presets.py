"""Named presets: how big a run is. `smoke` (a minute or two on a laptop CPU, for tests), `default` (a real tiny
run on a CPU in minutes), `paper` (the published hyper-parameters for GPU runs; Rank-GRPO, arXiv 2510.20150).

Every field can be overridden from the CLI; the resolved values are written to the run's spec.json.
"""

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
    rl_steps: int
    rl_lr: float
    num_generations: int
    prompts_per_step: int
    beta: float
    temperature: float
    mu: int
    eval_interval: int
    validation_size: int
    max_prompt_tokens: int
    """Prompts longer than this keep their instruction and the most recent dialogue (trimmed in preprocessing)."""


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
    "paper": Preset(
        "paper", eval_limit=None, max_new_tokens=400, eval_batch_size=64,
        sft_epochs=1.0, sft_max_steps=None, sft_lr=1e-5, sft_batch_size=64,
        rl_steps=1500, rl_lr=1e-6, num_generations=8, prompts_per_step=24, beta=1e-3, temperature=1.0, mu=1,
        eval_interval=100, validation_size=512, max_prompt_tokens=1024),
}


def get_preset(name: str) -> Preset:
    """A preset by name, with a did-you-mean error for unknown names."""
    if name not in PRESETS:
        raise UnknownNameError("preset", name, list(PRESETS))
    return PRESETS[name]
