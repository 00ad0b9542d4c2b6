"""The pieces of the RL rollout hook that need no model: TRL's row layout, the sampling settings it accepts from a
GRPOConfig, per-step seeds, and the `rl_rollouts` spec field (default, digest, errors)."""

from types import SimpleNamespace

import pytest

from algorithms.rollout_hook import EngineRollouts, distinct_prompts, rollout_kwargs, rollout_settings, step_seed
from bench.errors import BenchError, UnknownNameError
from bench.runs.specs import make_spec, sibling_spec


def _args(**changes: object) -> SimpleNamespace:
    """The GRPOConfig fields the hook reads, at TRL 1.16's defaults."""
    fields = {"max_completion_length": 16, "temperature": 0.9, "top_p": 1.0, "top_k": 0, "min_p": None,
              "repetition_penalty": 1.0, "generation_kwargs": None}
    return SimpleNamespace(**{**fields, **changes})


def test_distinct_prompts_takes_one_prompt_per_block_of_g() -> None:
    rows = [[1, 2]] * 3 + [[3]] * 3 + [[1, 2]] * 3
    assert distinct_prompts(rows, 3) == [[1, 2], [3], [1, 2]]


@pytest.mark.parametrize("rows", [[[1], [1], [2]], [[1], [2], [1], [2]]])
def test_distinct_prompts_refuses_another_layout(rows: list[list[int]]) -> None:
    with pytest.raises(ValueError, match="RepeatSampler"):
        distinct_prompts(rows, 2)


def test_rollout_settings_are_the_configs() -> None:
    settings = rollout_settings(_args(top_p=0.95, top_k=40), 4)
    assert (settings.max_new_tokens, settings.temperature, settings.top_p, settings.top_k) == (16, 0.9, 0.95, 40)
    assert settings.num_return_sequences == 4 and not settings.ignore_eos
    assert rollout_settings(_args(generation_kwargs={"min_new_tokens": 16}), 4).ignore_eos


@pytest.mark.parametrize("change", [{"min_p": 0.1}, {"repetition_penalty": 1.1},
                                    {"generation_kwargs": {"no_repeat_ngram_size": 3}},
                                    {"generation_kwargs": {"min_new_tokens": 4}}])
def test_rollout_settings_refuse_what_the_engine_does_not_apply(change: dict[str, object]) -> None:
    with pytest.raises(BenchError, match="rl_rollouts 'trl'"):
        rollout_settings(_args(**change), 4)


def test_step_seeds_depend_on_seed_step_and_process_only() -> None:
    assert step_seed(0, 5, 0) == step_seed(0, 5, 0)
    assert len({step_seed(0, 5, 0), step_seed(1, 5, 0), step_seed(0, 6, 0), step_seed(0, 5, 1)}) == 4


def test_rl_specs_default_to_the_engine_and_other_runs_keep_their_ids() -> None:
    for algo in ("grpo", "gspo", "rank_grpo"):
        spec = make_spec(algo, "tiny", "smoke")
        assert spec.rl_rollouts == "engine"
        assert make_spec(algo, "tiny", "smoke", rl_rollouts="trl").run_id != spec.run_id
        assert sibling_spec(spec, "sft").rl_rollouts is None
    # run ids of the methods that do not do RL, as main gives them without the field
    assert make_spec("sft", "tiny", "smoke").run_id == "sft-tiny-redial-smoke-s0-bc313fefc0"
    assert make_spec("zero_shot", "tiny", "smoke").run_id == "zero_shot-tiny-redial-smoke-s0-abffeb69c2"
    assert make_spec("sft", "tiny", "smoke", rl_rollouts="trl").rl_rollouts is None
    with pytest.raises(UnknownNameError, match="rl-rollouts"):
        make_spec("grpo", "tiny", "smoke", rl_rollouts="vllm")


def test_rollout_kwargs_pick_the_hook_for_the_engine_only() -> None:
    assert isinstance(rollout_kwargs("engine", "tiny")["rollout_func"], EngineRollouts)
    assert rollout_kwargs("trl", "tiny") == {} and rollout_kwargs(None, "tiny") == {}
