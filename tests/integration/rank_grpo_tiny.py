"""A tiny word-level Qwen2 setup for Rank-GRPO trainer tests (not a test module): tokenizer, model, prompts and a
stand-in hit function. Shared by test_rank_grpo_trainer.py and the multi-process helper multiprocess_loss.py."""

from pathlib import Path

import torch
from datasets import Dataset
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from bench.evaluation.parsing import split_lines

TITLES = ["Alien", "Heat", "Jaws", "Rocky", "Fargo", "Brazil", "Clue", "Up", "Psycho", "Tron"]
VOCAB = ["<pad>", "<eos>", "\n", "liked:", "recommend:", *TITLES]
N_ITEMS = 3


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level: every title is one token, "\\n" is its own token; small enough that a random model emits
    newlines and EOS often."""
    backend = Tokenizer(models.WordLevel(vocab={word: i for i, word in enumerate(VOCAB)}, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"\n|[^\s]+"), behavior="removed", invert=True)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<pad>")


def save_tiny_model(directory: Path, tokenizer: PreTrainedTokenizerFast) -> Path:
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


def tiny_dataset() -> Dataset:
    """8 plain-text prompts; the ground truth is 2 titles per prompt."""
    rows = []
    for i in range(8):
        liked = [TITLES[i % 10], TITLES[(i + 1) % 10]]
        truth = [TITLES[(i + 2) % 10], TITLES[(i + 5) % 10]]
        rows.append({"prompt": f"liked: {' '.join(liked)} recommend:", "groundtruth": truth})
    return Dataset.from_list(rows)


def tiny_hits(prompts: list, completions: list, groundtruth: list[list[str]], **_: object) -> list[list[float]]:
    """Stand-in for the evaluator's matcher: line k hits when one of its words is a ground-truth title."""
    hits = []
    for completion, truth in zip(completions, groundtruth, strict=True):
        lines = split_lines(completion)[:N_ITEMS]
        row = [1.0 if set(line.split()) & set(truth) else 0.0 for line in lines]
        hits.append(row + [0.0] * (N_ITEMS - len(row)))
    return hits
