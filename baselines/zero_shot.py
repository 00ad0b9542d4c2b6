"""Zero-shot: the backbone prompted as is, with greedy decoding, through the shared rollout engine.

Local backbones (tiny, registered hub models, local paths) generate through `RunContext.generate`; models named
`openai:<model>` are answered by an OpenAI-compatible endpoint (`bench.models.endpoint`): one greedy request per
distinct prompt (samples sharing `prompt_key` share it), `max_tokens` = the preset's `max_new_tokens`, cached as
answers arrive, with the usage written to `usage.json` in the run folder also when the run stops on an error.
"""

from collections.abc import Sequence

from bench.data.records import Example
from bench.models.endpoint import (
    ENDPOINT_PREFIX,
    USAGE_FILE,
    EndpointClient,
    EndpointSettings,
    RequestSettings,
    answer_prompts,
    price_per_1m,
    resolve_endpoint,
)
from bench.models.rollout_cache import RolloutCache
from bench.runs.context import MethodOutput, RunContext
from bench.runs.folders import atomic_write_json


def predict(ctx: RunContext) -> MethodOutput:
    """Greedy completions for every evaluation example (one generation per distinct prompt)."""
    examples = ctx.eval_examples()
    if ctx.spec.model.startswith(ENDPOINT_PREFIX):
        return endpoint_predictions(ctx, examples)
    backbone = ctx.load_backbone()
    predictions = ctx.generate(backbone, examples)
    return MethodOutput(predictions, {"backbone_fingerprint": backbone.fingerprint})


def endpoint_predictions(ctx: RunContext, examples: Sequence[Example],
                         settings: EndpointSettings | None = None) -> MethodOutput:
    """Greedy endpoint answers for `examples` (one request per distinct prompt, cached), with usage artifacts."""
    from tqdm.auto import tqdm

    endpoint = resolve_endpoint(ctx.spec.model, ctx.spec.base_url)
    price = price_per_1m(endpoint.model)
    client = EndpointClient(endpoint, RequestSettings(max_tokens=ctx.spec.settings.max_new_tokens), ctx.spec.seed,
                            settings or EndpointSettings.from_env())
    unique: dict[str, Example] = {}
    for example in examples:
        unique.setdefault(example.prompt_key, example)
    cache = RolloutCache(ctx.cache_dir / "endpoint")
    finished = False
    try:
        with tqdm(total=len(unique), desc="endpoint", unit="prompt", disable=not ctx.progress, leave=False) as bar:
            answers = answer_prompts(client, cache, [example.prompt for example in unique.values()],
                                     lambda: bar.update(1))
        finished = True
    finally:
        usage = client.usage.to_json(endpoint, price, finished)
        atomic_write_json(ctx.folder.root / USAGE_FILE, usage)
    by_prompt = dict(zip(unique, answers, strict=True))
    cost = "unknown cost" if usage["cost_usd"] is None else f"~${usage['cost_usd']:.4f}"
    ctx.log(f"endpoint {endpoint.model} at {endpoint.base_url}: {usage['prompts']} prompts, {usage['cached_prompts']} "
            f"cached, {usage['requests']} requests, {usage['retries']} retries, {usage['failed_prompts']} failed, "
            f"{usage['prompt_tokens']}+{usage['completion_tokens']} tokens, {cost}")
    return MethodOutput({example.id: by_prompt[example.prompt_key] for example in examples}, {"endpoint": usage})
