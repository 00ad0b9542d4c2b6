"""Token-level pieces of the transformers engine (`bench.models.rollouts.TransformersEngine`): the logits warpers
`generate` would build, a processor that reads the log-probs of the sampled tokens, and a prefill shared by the
copies of a prompt. Torch and transformers are imported inside the functions (heavy imports stay lazy)."""

from typing import Any

from bench.models.sampling import SamplingSettings


def sampled_warpers(settings: SamplingSettings) -> list[Any]:
    """The logits warpers `model.generate` appends for these settings, in its order and under its conditions
    (transformers 5.23 `GenerationMixin._get_logits_processor`: temperature if != 1, top-k if != 0, top-p if < 1;
    none when greedy)."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    if settings.greedy:
        return []
    warpers: list[Any] = []
    if settings.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(settings.temperature))
    if settings.top_k != 0:
        warpers.append(TopKLogitsWarper(top_k=settings.top_k))
    if settings.top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=settings.top_p))
    return warpers


class SampledLogprobs:
    """The last logits processor of a generation: it keeps the log-softmax ([rows, vocab], float32) of the scores
    the current token is drawn from, and at the next step reads the token just drawn (the last column of
    `input_ids`) to keep its log-prob; `finish` adds the last step's. Memory stays at one step's [rows, vocab],
    where `output_scores=True` would keep every step's. Returns the scores unchanged."""

    def __init__(self) -> None:
        self.previous: Any = None
        self.columns: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self.previous is not None:
            self.columns.append(self.previous.gather(1, input_ids[:, -1:]))
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, new_tokens: Any) -> Any:
        """[rows, new] log-probs of `new_tokens` (the generated columns, in order; one per processor call)."""
        import torch

        self.columns.append(self.previous.gather(1, new_tokens[:, -1:]))
        if len(self.columns) != new_tokens.shape[1]:
            raise RuntimeError(f"{len(self.columns)} scored steps for {new_tokens.shape[1]} generated tokens")
        return torch.cat(self.columns, dim=1)


def shared_prefill(model: Any, input_ids: Any, attention_mask: Any, copies: int, cache: Any) -> Any:
    """Run the prompts [batch, width] through the model once, all but their last token, into `cache` (a new
    `DynamicCache` when None), then repeat the cache `copies` times per row ([batch x copies] rows, copies
    adjacent): `generate` restarted from it with the repeated prompts computes only the last prompt token per row
    (transformers 5.23 `GenerationMixin._prefill` slices the inputs to the uncached part). Positions follow the
    left padding as `generate` derives them (`_prepare_position_ids_for_generation`)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config) if cache is None else cache
    prefix, mask = input_ids[:, :-1], attention_mask[:, :-1]
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    model(input_ids=prefix, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
          logits_to_keep=1)
    cache.batch_repeat_interleave(copies)
    return cache
