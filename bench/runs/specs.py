"""The typed, fully resolved description of one run; its digest names the run folder.

Two runs with the same spec share a folder (a completed one is skipped on re-run); any changed setting, preset
value or seed gives a new folder. `spec.json` in the folder is exactly `RunSpec.to_json()`.
"""

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bench.runs.presets import Preset, get_preset


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its CLI name, the module exposing `predict(ctx)`, whether it trains, whether it needs a
    language model. The table lives in the spec layer because specs need it (methods without a model share one
    run across backbones); `bench.runs.methods.get_method` imports the module."""

    name: str
    module: str
    trained: bool
    needs_model: bool
    description: str


ALGORITHMS: dict[str, MethodInfo] = {info.name: info for info in (
    MethodInfo("zero_shot", "baselines.zero_shot", False, True, "the backbone prompted as is (local or endpoint)"),
    MethodInfo("popularity", "baselines.popularity", False, False, "most mentioned items in training"),
    MethodInfo("ease", "baselines.ease", False, False, "EASE item-item model on training co-mentions"),
    MethodInfo("random", "baselines.random_items", False, False, "20 catalog items drawn uniformly (seeded): chance"),
    MethodInfo("crag", "baselines.crag", False, True, "collaborative retrieval + LLM reflection (CRAG)"),
    MethodInfo("sft", "algorithms.sft", True, True, "supervised fine-tuning on demonstrations (TRL SFTTrainer)"),
    MethodInfo("grpo", "algorithms.rl", True, True, "GRPO, token-level ratio, NDCG@20 reward (TRL)"),
    MethodInfo("gspo", "algorithms.rl", True, True, "GSPO, sequence-level ratio (TRL GRPOTrainer setting)"),
    MethodInfo("rank_grpo", "algorithms.rl", True, True, "Rank-GRPO, per-rank rewards/advantages/ratios"),
)}


@dataclass(frozen=True)
class RunSpec:
    """One method on one backbone, dataset and seed, with every setting resolved."""

    algo: str
    model: str
    dataset: str = "redial"
    catalog: str | None = None
    split: str = "test"
    seed: int = 0
    backend: str = "transformers"
    random_init: bool = False
    protocol: str = "standard"
    settings: Preset = field(default_factory=lambda: get_preset("default"))
    reward: str = "exp_inf"
    length_shaping: bool = True
    sft_data: str | None = None
    base_url: str | None = None

    @property
    def preset(self) -> str:
        return self.settings.name

    @property
    def method_label(self) -> str:
        """The method's name in reports: the algorithm, plus a `+suffix` for each departure from its published
        form (the Rank-GRPO reward `log_decay`, no length shaping, mu > 1), so a row named `rank_grpo` is only
        ever the published method."""
        suffixes = []
        if self.algo == "rank_grpo" and self.reward != "exp_inf":
            suffixes.append(self.reward)
        if self.algo == "rank_grpo" and not self.length_shaping:
            suffixes.append("noshaping")
        if self.algo in RL_ALGORITHMS and self.settings.mu != 1:
            suffixes.append(f"mu{self.settings.mu}")
        return "+".join([self.algo, *suffixes])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def digest(self) -> str:
        payload = json.dumps(self.to_json(), sort_keys=True, default=str).encode()
        return hashlib.sha256(payload).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        """`<algo>-<model>-<dataset>-<preset>-s<seed>-<digest>`, safe as a folder name."""
        parts = [self.algo, self.model, self.dataset, self.preset, f"s{self.seed}", self.digest]
        return "-".join(_slug(part) for part in parts)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")[-48:] or "x"


def make_spec(algo: str, model: str, preset: str = "default", preset_overrides: dict[str, Any] | None = None,
              **fields: Any) -> RunSpec:
    """Build a spec from a preset name plus overrides (None values mean 'keep the preset's value').

    Methods that use no language model (popularity, ease) get model "none", so one run serves every backbone.
    """
    if algo in ALGORITHMS and not ALGORITHMS[algo].needs_model:
        model = "none"
    settings = get_preset(preset)
    overrides = {key: value for key, value in (preset_overrides or {}).items() if value is not None}
    if overrides:
        settings = replace(settings, **overrides)
    return canonical(RunSpec(algo=algo, model=model, settings=settings,
                             **{key: value for key, value in fields.items() if value is not None}))


RL_ALGORITHMS = ("grpo", "gspo", "rank_grpo")
RL_SETTINGS = ("rl_steps", "rl_lr", "num_generations", "prompts_per_step", "beta", "temperature", "mu")


def canonical(spec: RunSpec) -> RunSpec:
    """Reset settings a method does not use to their defaults, so that equal runs get equal ids: an SFT run
    started by `--algo grpo --steps 50` and one started by `--algo rank_grpo --reward log_decay` are the same run."""
    if spec.algo not in RL_ALGORITHMS:
        preset = get_preset(spec.preset)
        spec = replace(spec, settings=replace(spec.settings, **{name: getattr(preset, name) for name in RL_SETTINGS}))
    if spec.algo != "rank_grpo":
        spec = replace(spec, reward="exp_inf", length_shaping=True)
    return spec


def spec_from_json(data: dict[str, Any]) -> RunSpec:
    """Inverse of `RunSpec.to_json` (reports read spec.json back)."""
    data = dict(data)
    data["settings"] = Preset(**data["settings"])
    return RunSpec(**data)
