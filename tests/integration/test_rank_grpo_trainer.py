"""RankGRPOTrainer trains a tiny Qwen2 model on CPU for a few steps, on-policy (mu = 1) and off-policy (mu = 2)."""

from pathlib import Path

import pytest
import torch
from datasets import Dataset
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from algorithms.rank_grpo_trainer import RankGRPOConfig, RankGRPOTrainer, StepTimes, step_time_benchmark
from bench.parsing import split_lines

TITLES = ["Alien", "Heat", "Jaws", "Rocky", "Fargo", "Brazil", "Clue", "Up", "Psycho", "Tron"]
VOCAB = ["<pad>", "<eos>", "\n", "liked:", "recommend:", *TITLES]
N_ITEMS = 3


def _tokenizer() -> PreTrainedTokenizerFast:
    """Word-level: every title is one token, "\\n" is its own token; small enough that a random model emits
    newlines and EOS often."""
    backend = Tokenizer(models.WordLevel(vocab={word: i for i, word in enumerate(VOCAB)}, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"\n|[^\s]+"), behavior="removed", invert=True)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<pad>")


def _save_tiny_model(directory: Path, tokenizer: PreTrainedTokenizerFast) -> Path:
    """A randomly initialised 2-layer Qwen2 saved to disk (TRL builds the KL reference model from the path)."""
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    return directory


def _dataset() -> Dataset:
    """8 plain-text prompts; the ground truth is 2 titles per prompt."""
    rows = []
    for i in range(8):
        liked = [TITLES[i % 10], TITLES[(i + 1) % 10]]
        truth = [TITLES[(i + 2) % 10], TITLES[(i + 5) % 10]]
        rows.append({"prompt": f"liked: {' '.join(liked)} recommend:", "groundtruth": truth})
    return Dataset.from_list(rows)


def _hits(prompts: list, completions: list, groundtruth: list[list[str]], **_: object) -> list[list[float]]:
    """Stand-in for the evaluator's matcher: line k hits when one of its words is a ground-truth title."""
    hits = []
    for completion, truth in zip(completions, groundtruth, strict=True):
        lines = split_lines(completion)[:N_ITEMS]
        row = [1.0 if set(line.split()) & set(truth) else 0.0 for line in lines]
        hits.append(row + [0.0] * (N_ITEMS - len(row)))
    return hits


def _config_kwargs(num_iterations: int) -> dict:
    return {
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 12,
        "learning_rate": 1e-2,
        "n_items": N_ITEMS,
        "num_iterations": num_iterations,
        "use_cpu": True,
        "bf16": False,
        "activation_checkpointing": False,
        "logging_steps": 1,
        "seed": 0,
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, PreTrainedTokenizerFast]:
    tokenizer = _tokenizer()
    return _save_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), tokenizer), tokenizer


@pytest.mark.parametrize("num_iterations", [1, 2])
def test_rank_grpo_trains_parameters(tiny, tmp_path, num_iterations):
    model_dir, tokenizer = tiny
    args = RankGRPOConfig(
        output_dir=str(tmp_path), max_steps=3, report_to="none", save_strategy="no", **_config_kwargs(num_iterations)
    )
    trainer = RankGRPOTrainer(
        model=str(model_dir), rank_reward_fn=_hits, args=args, train_dataset=_dataset(), processing_class=tokenizer
    )
    before = {name: param.detach().clone() for name, param in trainer.model.named_parameters()}
    trainer.train()

    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 3
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in logs)
    assert all("clip_ratio/region_mean" in entry and "kl" in entry for entry in logs)
    generation_steps = logs[::num_iterations]  # with mu > 1 a batch is generated (and scored) every mu steps
    assert all("rank_grpo/items" in entry and "reward" in entry for entry in generation_steps)
    changed = [name for name, param in trainer.model.named_parameters() if not torch.equal(param, before[name])]
    assert len(changed) == len(before), f"unchanged: {set(before) - set(changed)}"


def test_off_policy_batches_carry_old_logps_and_rank_ids(tiny, tmp_path):
    """mu = 2: TRL stores the sampling policy's log-probs, which the rank-level ratio then compares against."""
    model_dir, tokenizer = tiny
    args = RankGRPOConfig(
        output_dir=str(tmp_path), max_steps=1, report_to="none", save_strategy="no", **_config_kwargs(2)
    )
    trainer = RankGRPOTrainer(
        model=str(model_dir), rank_reward_fn=_hits, args=args, train_dataset=_dataset(), processing_class=tokenizer
    )
    trainer.model.train()
    batch = trainer._generate_and_score_completions([row for row in _dataset().select(range(2)) for _ in range(4)])
    assert batch["old_per_token_logps"].shape == batch["completion_ids"].shape
    assert batch["advantages"].shape == batch["completion_ids"].shape == batch["rank_ids"].shape
    assert int(batch["rank_ids"].max()) <= N_ITEMS
    assert torch.all(batch["advantages"][batch["completion_mask"] == 0] == 0)


def test_step_time_benchmark_times_both_trainers(tiny):
    model_dir, tokenizer = tiny
    times = step_time_benchmark(
        lambda: str(model_dir), tokenizer, _dataset(), _hits, _config_kwargs(1), steps=2, warmup_steps=1
    )
    assert isinstance(times, StepTimes)
    assert times.rank_grpo_s > 0 and times.grpo_s > 0
    assert times.ratio == pytest.approx(times.rank_grpo_s / times.grpo_s)
