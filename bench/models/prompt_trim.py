"""Fitting prompts into a token budget in preprocessing (TRL 1.16 has no `max_prompt_length`; DESIGN.md).

A prompt's last user message is an instruction paragraph followed by the dialogue. When the chat-templated prompt is
longer than the budget, the oldest dialogue lines are dropped first (the instruction and the latest turns are what
the recommendation depends on most); a single over-long line is cut from its start.
"""

from collections.abc import Sequence
from typing import Any

Chat = tuple[dict[str, str], ...]


def prompt_length(tokenizer: Any, messages: Sequence[dict[str, str]]) -> int:
    """Tokens of the chat-templated prompt including the generation prompt."""
    ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)


def _with_content(messages: Sequence[dict[str, str]], content: str) -> Chat:
    return (*[dict(m) for m in messages[:-1]], {**messages[-1], "content": content})


def trim_prompt(tokenizer: Any, messages: Sequence[dict[str, str]], max_tokens: int) -> Chat:
    """The prompt with its oldest dialogue lines dropped until it fits `max_tokens` (unchanged when it fits)."""
    messages = tuple(dict(m) for m in messages)
    if prompt_length(tokenizer, messages) <= max_tokens:
        return messages
    content = messages[-1]["content"]
    head, separator, dialogue = content.partition("\n\n")
    if not separator:
        head, dialogue = "", content
    lines = dialogue.split("\n")

    def build(kept: list[str]) -> Chat:
        body = "\n".join(kept)
        return _with_content(messages, f"{head}\n\n{body}" if head else body)

    low, high = 0, len(lines) - 1
    while low < high:
        middle = (low + high) // 2
        if prompt_length(tokenizer, build(lines[middle:])) <= max_tokens:
            high = middle
        else:
            low = middle + 1
    candidate = build(lines[low:])
    last = lines[-1]
    while prompt_length(tokenizer, candidate) > max_tokens and last:
        last = last[max(1, len(last) // 4):]
        candidate = build([last])
    return candidate
