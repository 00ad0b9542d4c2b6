"""CRAG: collaborative retrieval-augmented LLM recommendation (Zhu et al., "Collaborative Retrieval for LLM-based
Conversational Recommender Systems", WWW 2025; DESIGN.md, CRAG).

Why: an LLM alone knows popular movies but not which ones co-occur in users' tastes; CRAG adds an item-item model's
neighbours of what the user mentioned, filtered by the LLM, to the recommendation prompt. Per example, each step
batched over the evaluation examples (one `ChatClient.chat` call per step, greedy, rollout- or endpoint-cached):

a. mentioned items and whether liked: the dataset's `context_items` when it has them (the shipped ReDial data
   does); otherwise the LLM lists them under `Liked:` / `Disliked:` and each title is Remapped onto the catalog;
b. collaborative retrieval: the top K (30) items of EASE fitted on the training split for the liked (or
   unlabelled) mentions, padded with training popularity when EASE scores fewer than K;
c. reflection: the LLM is shown the conversation and the candidates and names those that fit; its answer is read
   with the shared parser and Remapped onto the candidates. An answer naming no candidate (tiny models) falls back
   to the N_FALLBACK_KEPT candidates with the best EASE scores, recorded as `fallback: true`;
d./e. the kept candidates are appended to the original prompt under "Candidates from similar users:" and the LLM
   recommends 20 movies;
f. rerank: the LLM rates each recommended item 0-10 (`baselines.reflect_adjust.rating_prompt`); items are reordered
   by rating (unrated ones count as neutral). An answer rating nothing, or a recommendation with no parsable item,
   keeps the step-e text as it is (`fallback: true`).

Every generation uses the preset's `max_new_tokens`. The final text is what the evaluator scores; each step's
prompt (as built; local backbones see it trimmed to the preset's prompt budget, oldest dialogue lines first) and
output are saved per example under `crag` in examples.jsonl.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from baselines.collaborative import top_unseen
from baselines.ease import EASERecommender
from baselines.reflect_adjust import (
    conversation_text,
    listing_prompt,
    match_items,
    ordered_by_rating,
    parse_ratings,
    rating_prompt,
)
from baselines.remap import DEFAULT_FUZZY_THRESHOLD, Remapper
from bench.data.dataset import Dataset
from bench.data.records import ContextItem, Example, Item
from bench.evaluation.parsing import format_item, parse_line, parse_recommendations, split_lines
from bench.models.endpoint import ENDPOINT_PREFIX, USAGE_FILE, resolve_endpoint
from bench.models.llm_client import ChatClient, EndpointChat, LocalChat
from bench.runs.context import MethodOutput, RunContext
from bench.runs.folders import atomic_write_json

K_RETRIEVED = 30
N_FALLBACK_KEPT = 10
CANDIDATE_HEADING = "Candidates from similar users:"
_LABEL = re.compile(r"[\s*#_-]*(?P<label>liked|disliked)[\s*_]*:[\s*_]*(?P<rest>.*)", re.IGNORECASE)

EXTRACT_INSTRUCTION = (
    "List every movie mentioned in the conversation below. Write a line 'Liked:' followed by the movies the user "
    "likes or asks about, then a line 'Disliked:' followed by the movies the user dislikes, one movie per line "
    "written as Title (Year), and nothing else."
)
REFLECT_INSTRUCTION = (
    "Users with similar taste liked the candidate movies listed after the conversation below. Reply with the "
    "candidates that fit what the user is asking for, best first, one per line written as Title (Year), and "
    "nothing else."
)


@dataclass(frozen=True)
class CragSettings:
    """How many candidates are retrieved, how many are kept when reflection is unusable, and Remap's threshold."""

    k: int = K_RETRIEVED
    n_fallback: int = N_FALLBACK_KEPT
    fuzzy_threshold: float = DEFAULT_FUZZY_THRESHOLD


def has_context_items(dataset: Dataset) -> bool:
    """Whether the dataset records mentioned items; if it does, an example without context items mentioned none."""
    return any(example.context_items for split in dataset.splits.values() for example in split)


def parse_mentions(text: str, remapper: Remapper) -> tuple[ContextItem, ...]:
    """Mentioned items from an extraction answer: items after a `Disliked:` label are disliked, all others liked
    (a label may share its line with the first item); titles Remapped onto the catalog, misses and repeats
    dropped."""
    mentions: dict[Item, bool] = {}
    liked = True
    for line in split_lines(text):
        labelled = _LABEL.match(line)
        if labelled:
            liked = labelled.group("label").lower() == "liked"
            line = labelled.group("rest")
        written = parse_line(line)
        item = remapper.remap(*written).item if written else None
        if item is not None:
            mentions.setdefault(item, liked)
    return tuple(ContextItem(title, year, liked) for (title, year), liked in mentions.items())


def retrieve(ease: EASERecommender, example: Example, context: Sequence[ContextItem],
             k: int) -> list[tuple[Item, float | None]]:
    """Step b: up to `k` (item, EASE score) pairs, best first, then popularity (score None) to make `k`; no seen or
    mentioned title."""
    scored = dict(ease.retrieve(context, k))
    excluded = [*example.seen_titles, *(mention.title for mention in context)]
    return [(item, scored.get(item)) for item in top_unseen(chain(scored, ease.popularity), excluded, k)]


def with_candidates(prompt: Sequence[dict[str, str]], candidates: Sequence[Item]) -> list[dict[str, str]]:
    """Step d: the original prompt with the candidates appended to its last message."""
    listing = "\n".join(format_item(item) for item in candidates)
    last = prompt[-1]
    return [*(dict(m) for m in prompt[:-1]),
            {**last, "content": f"{last['content']}\n\n{CANDIDATE_HEADING}\n{listing}"}]


def _items_json(items: Sequence[Item]) -> list[list[Any]]:
    return [[title, year] for title, year in items]


def _mentions(dataset: Dataset, examples: Sequence[Example], client: ChatClient, remapper: Remapper,
              max_tokens: int) -> tuple[dict[str, tuple[ContextItem, ...]], dict[str, dict[str, Any]]]:
    """Step a: mentioned items per example id, and the extraction prompt/output per id when the LLM was asked."""
    if has_context_items(dataset):
        return {example.id: example.context_items for example in examples}, {}
    prompts = [[{"role": "user", "content": f"{EXTRACT_INSTRUCTION}\n\n{conversation_text(example.prompt)}"}]
               for example in examples]
    outputs = client.chat(prompts, max_tokens)
    mentions = {example.id: parse_mentions(output, remapper) for example, output in zip(examples, outputs)}
    steps = {example.id: {"prompt": prompt, "output": output}
             for example, prompt, output in zip(examples, prompts, outputs)}
    return mentions, steps


def _reflect(examples: Sequence[Example], candidates: dict[str, list[tuple[Item, float | None]]],
             client: ChatClient, settings: CragSettings, max_tokens: int) -> dict[str, dict[str, Any]]:
    """Step c: the kept candidates per example id, with the prompt, output and whether the fallback was used."""
    listed = {example.id: [item for item, _ in candidates[example.id]] for example in examples}
    prompts = [listing_prompt(REFLECT_INSTRUCTION, conversation_text(example.prompt), CANDIDATE_HEADING,
                              listed[example.id]) for example in examples]
    steps: dict[str, dict[str, Any]] = {}
    for example, prompt, output in zip(examples, prompts, client.chat(prompts, max_tokens), strict=True):
        named = match_items(parse_recommendations(output), listed[example.id], settings.fuzzy_threshold)
        kept = list(dict.fromkeys(item for item in named if item is not None))
        fallback = not kept
        if fallback:
            kept = listed[example.id][:settings.n_fallback]
        steps[example.id] = {"prompt": prompt, "output": output, "kept": kept, "fallback": fallback}
    return steps


def _rerank(examples: Sequence[Example], recommendations: dict[str, str], client: ChatClient,
            max_tokens: int) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Step f: the final text per example id, and the rating prompt, output, ratings and fallback flag per id."""
    recommended = {example.id: list(dict.fromkeys(parse_recommendations(recommendations[example.id])))
                   for example in examples}
    rated = [example for example in examples if recommended[example.id]]
    prompts = [rating_prompt(conversation_text(example.prompt), recommended[example.id]) for example in rated]
    answers = dict(zip((example.id for example in rated), zip(prompts, client.chat(prompts, max_tokens))))
    finals: dict[str, str] = {}
    steps: dict[str, dict[str, Any]] = {}
    for example in examples:
        prompt, output = answers.get(example.id, (None, None))
        ratings = parse_ratings(output or "", recommended[example.id])
        finals[example.id] = recommendations[example.id]
        if ratings:
            order = ordered_by_rating(recommended[example.id], ratings)
            finals[example.id] = "\n".join(format_item(item) for item in order)
        steps[example.id] = {"prompt": prompt, "output": output, "fallback": not ratings,
                             "ratings": [[title, year, rating] for (title, year), rating in ratings.items()]}
    return finals, steps


def client_for_run(ctx: RunContext) -> ChatClient:
    """The run's model as a client: its backbone (through `ctx.load_backbone`, the run's backend, batch size,
    prompt budget and seed) or its endpoint (the spec's base URL)."""
    if ctx.spec.model.startswith(ENDPOINT_PREFIX):
        return EndpointChat(resolve_endpoint(ctx.spec.model, ctx.spec.base_url), ctx.cache_dir / "endpoint",
                            ctx.spec.seed)
    settings = ctx.spec.settings
    return LocalChat(ctx.load_backbone(), ctx.cache_dir / "rollouts", settings.max_prompt_tokens, ctx.spec.seed,
                     ctx.spec.backend, settings.eval_batch_size, ctx.progress)


def predict(ctx: RunContext, settings: CragSettings = CragSettings()) -> MethodOutput:
    """`bench run --algo crag --model M`: the six steps of the module docstring for every evaluation example."""
    examples = ctx.eval_examples()
    budget = ctx.spec.settings.max_new_tokens
    ease = EASERecommender.fit(ctx.dataset, protocol=ctx.spec.protocol)
    client = client_for_run(ctx)
    try:
        mentions, extraction = _mentions(ctx.dataset, examples, client, Remapper(ctx.dataset.catalog,
                                                                                 settings.fuzzy_threshold), budget)
        candidates = {example.id: retrieve(ease, example, mentions[example.id], settings.k) for example in examples}
        reflection = _reflect(examples, candidates, client, settings, budget)
        prompts = [with_candidates(example.prompt, reflection[example.id]["kept"]) for example in examples]
        outputs = dict(zip((example.id for example in examples), client.chat(prompts, budget)))
        finals, rerank = _rerank(examples, outputs, client, budget)
    finally:
        usage = client.usage()
        if usage is not None:
            atomic_write_json(ctx.folder.root / USAGE_FILE, usage)
    per_example = {}
    for example, prompt in zip(examples, prompts, strict=True):
        steps = {
            "context_source": "llm" if extraction else "dataset",
            "context_items": [[c.title, c.year, c.liked] for c in mentions[example.id]],
            "extraction": extraction.get(example.id),
            "retrieved": [[title, year, score] for (title, year), score in candidates[example.id]],
            "reflection": {**reflection[example.id], "kept": _items_json(reflection[example.id]["kept"])},
            "recommendation": {"prompt": prompt, "output": outputs[example.id]},
            "rerank": rerank[example.id],
        }
        per_example[example.id] = {"crag": steps}
    artifacts = {"model": client.name, "k": settings.k, "n_fallback": settings.n_fallback,
                 "ease_lambda": ease.lam, "context_source": "llm" if extraction else "dataset",
                 "reflection_fallbacks": sum(step["fallback"] for step in reflection.values()),
                 "rerank_fallbacks": sum(step["fallback"] for step in rerank.values()), "endpoint": usage}
    ctx.log(f"crag: {len(examples)} examples, reflection fallbacks {artifacts['reflection_fallbacks']}, "
            f"rerank fallbacks {artifacts['rerank_fallbacks']}")
    return MethodOutput(finals, artifacts, per_example)
