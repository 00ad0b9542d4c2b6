"""The algorithm registry: CLI names -> the module that produces predictions for a run.

Each entry's module exposes `predict(ctx: RunContext) -> MethodOutput`; modules are imported only when chosen.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from bench.errors import UnknownNameError
from bench.run_context import MethodOutput, RunContext


@dataclass(frozen=True)
class MethodInfo:
    name: str
    module: str
    trained: bool
    needs_model: bool
    description: str


ALGORITHMS: dict[str, MethodInfo] = {info.name: info for info in (
    MethodInfo("zero_shot", "baselines.zero_shot", False, True, "the backbone prompted as is (local or endpoint)"),
    MethodInfo("popularity", "baselines.popularity", False, False, "most mentioned items in training"),
    MethodInfo("ease", "baselines.ease", False, False, "EASE item-item model on training co-mentions"),
    MethodInfo("crag", "baselines.crag", False, True, "collaborative retrieval + LLM reflection (CRAG)"),
    MethodInfo("sft", "algorithms.sft", True, True, "supervised fine-tuning on demonstrations (TRL SFTTrainer)"),
    MethodInfo("grpo", "algorithms.rl", True, True, "GRPO, token-level ratio, NDCG@20 reward (TRL)"),
    MethodInfo("gspo", "algorithms.rl", True, True, "GSPO, sequence-level ratio (TRL GRPOTrainer setting)"),
    MethodInfo("rank_grpo", "algorithms.rl", True, True, "Rank-GRPO, per-rank rewards/advantages/ratios"),
)}


def get_method(name: str) -> tuple[MethodInfo, Callable[[RunContext], MethodOutput]]:
    """The registry entry and its `predict` function (imports the module now)."""
    if name not in ALGORITHMS:
        raise UnknownNameError("algorithm", name, list(ALGORITHMS))
    info = ALGORITHMS[name]
    module = importlib.import_module(info.module)
    return info, module.predict
