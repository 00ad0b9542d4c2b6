"""How much of one optimizer step survives when the weights themselves are stored in bf16 (no float32 master copy).

Adam's step on a weight is at most about the learning rate (m / sqrt(v) is +-1 on the first step, and at most about
1 after), and PyTorch's AdamW writes it into the parameter in the parameter's dtype. A bf16 weight w keeps 8
significant bits, so w + step rounds back to w whenever |step| is under half the spacing of bf16 numbers at w. This
prints, for each backbone and each preset's learning rate, the share of weights that a step of exactly +lr leaves
unchanged in bf16 (a lower bound on the share of Adam's updates lost: later steps are smaller). Run from the
repository root with the SmolLM2 cache built (`BENCH_CACHE=...`):
`python results/gpu/h200-2026-12-04/matrix/bf16_rounding.py`."""

import torch

from bench.data.datasets import load_dataset
from bench.models.backbones import load_backbone
from bench.runs.presets import get_preset

PRESETS = ("testbed-rl", "redial-rl", "paper")


def unchanged_share(model: torch.nn.Module, step: float) -> float:
    """Share of trainable weights w with bf16(bf16(w) + step) == bf16(w), the update computed in float32 and stored
    in bf16."""
    kept, total = 0, 0
    for parameter in model.parameters():
        weights = parameter.detach().to(torch.bfloat16)
        updated = (weights.float() + step).to(torch.bfloat16)
        kept += int((updated == weights).sum())
        total += weights.numel()
    return kept / total


def main() -> None:
    backbones = {"tiny (synthetic:testbed)": load_backbone("tiny", corpus=load_dataset("synthetic:testbed").corpus(),
                                                           seed=0, dtype="float32"),
                 "smollm2-135m": load_backbone("smollm2-135m", dtype="float32")}
    header = "share of weights a step of +lr leaves unchanged"
    print(f"{'backbone':<26} {'preset':<11} {'stage':<4} {'lr':>8} {header:>10}")
    for name, backbone in backbones.items():
        for preset_name in PRESETS:
            preset = get_preset(preset_name)
            for stage, lr in (("SFT", preset.sft_lr), ("RL", preset.rl_lr)):
                share = unchanged_share(backbone.model, lr)
                print(f"{name:<26} {preset_name:<11} {stage:<4} {lr:>8.0e} {share:>10.4f}")


if __name__ == "__main__":
    main()
