"""LoRA for SFT and every RL method: the PEFT config handed to TRL's trainers (`peft_config=`), and the merge that
makes the trained model a plain checkpoint again.

LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022) freezes the backbone and trains
a rank-r update B A (scaled by alpha / r) beside each targeted linear layer. Only the adapters get gradients and
optimizer state, which is what lets an 8B backbone train on one GPU: full fine-tuning in bf16 with AdamW needs about
16 bytes per parameter (weights, gradients, two fp32 moments and master weights; ~130 GB for 8B, before
activations), LoRA about 2 bytes per frozen parameter plus 16 per adapter parameter (r = 16 on every linear layer of
Llama-3.1-8B is ~42M parameters: ~17 GB in all). On this 2-core CPU it also shortens a step (`bench bench train-step`,
`benchmarks/train_step.py`).

The run's spec records `lora_r` (0 = full fine-tuning), `lora_alpha` (default 2r) and `lora_targets` (PEFT's
"all-linear": every linear layer but the output head; or a comma-separated list of module names). TRL wraps the
model (`get_peft_model`), trains the adapters, and generates its rollouts through the wrapped model; in-training
validation does too (the same function as the merged model). Before `model/` is saved the adapters are merged
(`merge_and_unload`), so evaluation, RL warm starts and serving load an ordinary checkpoint and never see PEFT.
"""

from typing import Any

from bench.runs.specs import RunSpec

ALL_LINEAR = "all-linear"
"""PEFT's target for every linear layer except the output head."""


def lora_config(r: int, alpha: float | None, targets: str) -> Any:
    """The `peft.LoraConfig` for rank `r` (None when r is 0: full fine-tuning); no dropout, no bias training."""
    if r <= 0:
        return None
    from peft import LoraConfig

    modules: str | list[str] = ALL_LINEAR if targets == ALL_LINEAR else [m.strip() for m in targets.split(",")
                                                                         if m.strip()]
    return LoraConfig(r=r, lora_alpha=alpha if alpha is not None else 2 * r, lora_dropout=0.0, bias="none",
                      target_modules=modules, task_type="CAUSAL_LM")


def spec_lora_config(spec: RunSpec) -> Any:
    """The LoRA config of a run's spec (`RunSpec.lora_r`, `lora_alpha`, `lora_targets`), or None."""
    return lora_config(spec.lora_r, spec.lora_alpha, spec.lora_targets)


def merge_adapters(trainer: Any) -> None:
    """Fold trained adapters into the base weights in place and give the trainer the plain model, so that
    `save_final_model` writes an ordinary checkpoint; nothing happens for full fine-tuning."""
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    if isinstance(model, PeftModel):
        trainer.model = model.merge_and_unload()
        trainer.model_wrapped = trainer.model
