"""Helper script of test_multiprocess.py (not a test module): the Rank-GRPO loss and gradient of RankGRPOTrainer on
one fixed batch, in as many processes as it is launched with.

    python tests/integration/multiprocess_loss.py MODEL_DIR OUT                 # one process
    accelerate launch --config_file algorithms/configs/two_processes.yaml \\
        tests/integration/multiprocess_loss.py MODEL_DIR OUT                    # two processes

The batch is GROUPS prompts x G fixed completions (no sampling: `_generate_single_turn` returns them), in TRL's
order (the G completions of a prompt are consecutive); process p of P holds rows p*B/P .. (p+1)*B/P - 1, so a group
may span processes. Everything after generation is the trainer's own code: rewards, the gather of hits over
processes before the per-rank group normalisation, the token advantages, the loss and its aggregation. The main
process saves, for each loss type, the loss and gradient averaged over processes (what DDP applies) and the
gathered token advantages.
"""

import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from rank_grpo_tiny import N_ITEMS, TITLES, VOCAB, tiny_dataset, tiny_hits, tiny_tokenizer

from algorithms.rank_grpo_trainer import RankGRPOConfig, RankGRPOTrainer

GROUPS = 3
G = 4
MAX_COMPLETION_LENGTH = 16
LOSS_TYPES = ("dapo", "grpo")


def fixed_completions() -> list[list[int]]:
    """GROUPS x G seeded token lists: 0-5 lines of 1-2 titles, most ending in EOS (early, exact, or past N items),
    some cut without one."""
    generator = torch.Generator().manual_seed(0)
    eos, newline = VOCAB.index("<eos>"), VOCAB.index("\n")
    first_title = VOCAB.index(TITLES[0])
    completions = []
    for _ in range(GROUPS * G):
        tokens: list[int] = []
        for _ in range(int(torch.randint(0, 6, (1,), generator=generator))):
            words = int(torch.randint(1, 3, (1,), generator=generator))
            tokens += (first_title + torch.randint(0, len(TITLES), (words,), generator=generator)).tolist()
            tokens.append(newline)
        tokens = tokens[: MAX_COMPLETION_LENGTH - 1]
        if torch.rand(1, generator=generator).item() < 0.8:
            tokens.append(eos)
        completions.append(tokens or [eos])
    return completions


class FixedCompletionsTrainer(RankGRPOTrainer):
    """RankGRPOTrainer whose generation returns this process's rows of `fixed_completions`."""

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        start = self.accelerator.process_index * len(prompt_ids)
        return fixed_completions()[start : start + len(prompt_ids)], None


def loss_gradient_advantages(model_dir: str, loss_type: str, output_dir: str, num_processes: int) -> dict[str, Any]:
    """This process's loss and gradient averaged over processes, and the token advantages of all processes."""
    tokenizer = tiny_tokenizer()
    args = RankGRPOConfig(
        output_dir=output_dir, report_to="none", save_strategy="no", use_cpu=True, bf16=False,
        gradient_checkpointing=False, per_device_train_batch_size=GROUPS * G // num_processes, num_generations=G,
        max_completion_length=MAX_COMPLETION_LENGTH, n_items=N_ITEMS, loss_type=loss_type, seed=0,
    )
    trainer = FixedCompletionsTrainer(
        model=model_dir, rank_reward_fn=tiny_hits, args=args, train_dataset=tiny_dataset(), processing_class=tokenizer
    )
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this bypasses
    rows = [row for row in tiny_dataset().select(range(GROUPS)) for _ in range(G)]
    per_process = len(rows) // trainer.accelerator.num_processes
    index = trainer.accelerator.process_index
    batch = trainer._generate_and_score_completions(rows[index * per_process : (index + 1) * per_process])
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    gradient = torch.cat([param.grad.flatten() for param in trainer.model.parameters()])
    advantages = trainer.accelerator.pad_across_processes(batch["advantages"], dim=1)
    return {
        "loss": trainer.accelerator.reduce(loss.detach(), reduction="mean"),
        "gradient": trainer.accelerator.reduce(gradient, reduction="mean"),
        "advantages": trainer.accelerator.gather(advantages),
    }


def main(model_dir: str, out: str) -> None:
    state = PartialState(cpu=True)
    with tempfile.TemporaryDirectory() as output_dir:
        results: dict[str, Any] = {
            loss_type: loss_gradient_advantages(model_dir, loss_type, output_dir, state.num_processes)
            for loss_type in LOSS_TYPES
        }
    if state.is_main_process:
        torch.save({**results, "num_processes": state.num_processes}, Path(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
