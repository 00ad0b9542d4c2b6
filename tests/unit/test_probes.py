"""The probes' fixed inputs (`experiments.probes`): the same lists on every call, covering what the reward, the parser
and the segmentation must handle, and replayed to TRL's `rollout_func` in the order prompts repeat."""

from typing import Any

from bench.data.datasets import load_dataset
from bench.evaluation.evaluator import rank_hits
from bench.evaluation.parsing import split_lines
from experiments.probes import LIST_LENGTHS, UNKNOWN_TITLE, UNPARSABLE_LINE, ReplayRollouts, fixed_completions


def test_fixed_completions_are_fixed_and_cover_the_cases() -> None:
    dataset = load_dataset("synthetic:check")
    examples = dataset.split("train")[:4]
    lists = [fixed_completions(example, dataset.catalog, 8) for example in examples]
    assert lists == [fixed_completions(example, dataset.catalog, 8) for example in examples]
    texts = [text for group in lists for text in group]
    lengths = [len(split_lines(text)) for text in texts]
    assert lengths == list(LIST_LENGTHS) * 4  # exactly N, short, overflowing N, one line
    assert any(UNKNOWN_TITLE in text for text in texts) and any(UNPARSABLE_LINE in text for text in texts)
    assert any(text.startswith("1. ") for text in texts)
    hits = [sum(rank_hits(text, example, dataset.catalog)) for example, group in zip(examples, lists, strict=True)
            for text in group]
    assert min(hits) == 0 and max(hits) >= 3 and len(set(hits)) >= 3  # groups whose rewards differ


class _Tokenizer:
    """Ids are character codes."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}


class _Trainer:
    """TRL's prompt tokenization, as the concatenated contents' character codes."""

    @staticmethod
    def _tokenize_prompts(prompts: list[list[dict[str, str]]]) -> tuple[list[list[int]], None, dict]:
        return [[ord(c) for message in prompt for c in message["content"]] for prompt in prompts], None, {}


def test_replay_answers_the_kth_repeat_of_a_prompt_with_its_kth_completion() -> None:
    rows = [{"prompt": [{"role": "user", "content": "a"}], "example_id": "x"},
            {"prompt": [{"role": "user", "content": "b"}], "example_id": "y"}]
    replay = ReplayRollouts(rows, {"x": ["x0", "x1"], "y": ["y0", "y1 is long"]}, _Tokenizer(), eos_id=0,
                            max_length=5)
    prompts = [rows[1]["prompt"], rows[0]["prompt"], rows[1]["prompt"], rows[0]["prompt"]]
    output = replay(prompts, _Trainer())
    assert output["prompt_ids"] == [[ord("b")], [ord("a")], [ord("b")], [ord("a")]]
    assert output["completion_ids"] == [[ord("y"), ord("0"), 0], [ord("x"), ord("0"), 0],
                                        [ord(c) for c in "y1 is"], [ord("x"), ord("1"), 0]]  # cut at 5: no EOS
    assert output["logprobs"] is None
