"""The typed, fully resolved description of one run; its digest names the run folder.

Two runs with the same spec share a folder (a completed one is skipped on re-run); any changed setting, preset
value or seed gives a new folder. `spec.json` in the folder is exactly `RunSpec.to_json()`.
"""

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bench.errors import BenchError, UnknownNameError
from bench.runs.presets import (
    CLIPPING,
    DEFAULT_LOSS_TYPE,
    GSPO_LOSS_TYPE,
    LOSS_TYPES,
    Preset,
    get_preset,
    resolve_optimizer,
    transformers_scheduler,
)


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
    probe: str | None = None
    """`module:function` of the method's deterministic probe for `bench check` (`experiments.probes`), if any."""


ALGORITHMS: dict[str, MethodInfo] = {info.name: info for info in (
    MethodInfo("zero_shot", "baselines.zero_shot", False, True, "the backbone prompted as is (local or endpoint)"),
    MethodInfo("popularity", "baselines.popularity", False, False, "most mentioned items in training"),
    MethodInfo("ease", "baselines.ease", False, False, "EASE item-item model on training co-mentions"),
    MethodInfo("random", "baselines.random_items", False, False, "20 catalog items drawn uniformly (seeded): chance"),
    MethodInfo("crag", "baselines.crag", False, True, "collaborative retrieval + LLM reflection (CRAG)"),
    MethodInfo("sft", "algorithms.sft", True, True, "supervised fine-tuning on demonstrations (TRL SFTTrainer)",
               "experiments.probes:sft_probe"),
    MethodInfo("grpo", "algorithms.rl", True, True, "GRPO, token-level ratio, NDCG@20 reward (TRL)",
               "experiments.probes:rl_probe"),
    MethodInfo("gspo", "algorithms.rl", True, True, "GSPO, sequence-level ratio (TRL GRPOTrainer setting)",
               "experiments.probes:rl_probe"),
    MethodInfo("rank_grpo", "algorithms.rl", True, True,
               "Rank-GRPO as published: per-rank rewards/advantages/ratios, length shaping",
               "experiments.probes:rl_probe"),
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
    missing_rank_credit: bool = False
    """Our Rank-GRPO variant (`rank_grpo+mrc`): an early EOS also carries the advantages of the ranks the list did
    not generate (`algorithms.rank_grpo.missing_rank_credit`); not in the published trainer."""
    reward_signal: str = "real"
    """`real`, or `shuffled`: the null control (`+null`), each group's rewards permuted among its completions, so
    the update keeps its size and the reward its distribution but carries no information
    (`algorithms.rl.shuffle_within_groups`)."""
    sft_data: str | None = None
    base_url: str | None = None
    epsilon_low: float | None = None
    epsilon_high: float | None = None
    """Clip range of the RL ratio, resolved per method from `bench.runs.presets.CLIPPING` (None for other methods)."""
    loss_type: str | None = None
    """TRL token aggregation of the RL loss (`bnpo` for GRPO and Rank-GRPO, `grpo` for GSPO; None elsewhere)."""
    lora_r: int = 0
    """LoRA rank for SFT and RL (0: full fine-tuning; `algorithms.lora`); alpha defaults to 2r, targets to every
    linear layer. Left out of the digest while 0, so runs without LoRA keep their ids."""
    lora_alpha: float | None = None
    lora_targets: str = "all-linear"
    dtype: str | None = None
    """The dtype the run's backbone is loaded and decoded in (both engines, and vLLM's RL rollouts): float32,
    bfloat16 or float16, resolved by `make_spec` for methods with a model (default: float32 on CPU, bf16 on CUDA),
    None for the others. Training always updates float32 weights (`algorithms.training.TRAIN_DTYPE`; on CUDA it
    computes in bf16 under autocast); the CUDA records in results/gpu/h200-2026-12-04/ predate that and trained bf16
    weights under the same ids. Left out of the digest while float32 (every run before the field ran in float32 on
    CPU), so those ids do not move."""
    rl_rollouts: str | None = None
    """How RL training generates its rollouts: "engine" (the shared engine through TRL's `rollout_func`,
    `algorithms.rollout_hook`; the default) or "trl" (TRL's own `generate`). None for other methods, and in RL specs
    written before the field existed (they ran TRL's `generate`); left out of the digest while None, so the ids of
    every other method's runs do not move."""

    @property
    def preset(self) -> str:
        return self.settings.name

    @property
    def method_label(self) -> str:
        """The method's name in reports: the algorithm, plus a `+suffix` for each departure from its published
        form (specs written before clip range and loss type were recorded carry none for them) (the Rank-GRPO reward `log_decay`, no length shaping, our missing-rank credit, mu > 1, a clip range or
        loss aggregation other than the method's declared one), so a row named `rank_grpo` is only ever the
        published method."""
        suffixes = []
        if self.algo == "rank_grpo" and self.reward != "exp_inf":
            suffixes.append(self.reward)
        if self.algo == "rank_grpo" and not self.length_shaping:
            suffixes.append("noshaping")
        if self.algo == "rank_grpo" and self.missing_rank_credit:
            suffixes.append("mrc")
        if self.algo in CLIPPING and self.epsilon_low is not None and self.epsilon_high is not None:
            clip = CLIPPING[self.algo]
            if (self.epsilon_low, self.epsilon_high) != (clip.low, clip.high):
                suffixes.append(f"eps{self.epsilon_low:g}-{self.epsilon_high:g}")
        if self.algo in CLIPPING and self.loss_type is not None and self.loss_type != _default_loss_type(self.algo):
            suffixes.append(self.loss_type)
        if self.algo in RL_ALGORITHMS and self.settings.mu != 1:
            suffixes.append(f"mu{self.settings.mu}")
        if self.reward_signal == "shuffled":
            suffixes.append("null")
        return "+".join([self.algo, *suffixes])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def digest(self) -> str:
        data = self.to_json()
        if self.lora_r == 0:
            data = {key: value for key, value in data.items() if key not in LORA_FIELDS}
        if self.rl_rollouts is None:
            del data["rl_rollouts"]
        if self.dtype in (None, "float32"):
            del data["dtype"]
        payload = json.dumps(data, sort_keys=True, default=str).encode()
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
    Resolved here, so that spec.json and `bench run --dry-run` show them: the clip range and loss aggregation of RL
    methods (per method, `bench.runs.presets.CLIPPING` and `DEFAULT_LOSS_TYPE`, unless given), the optimizer
    (`resolve_optimizer`), and RL steps from `rl_epochs` (ceil(epochs x training examples / prompts per step), the
    step count of TRL's sampler over the training split) unless `rl_steps` is given.
    """
    if algo in ALGORITHMS and not ALGORITHMS[algo].needs_model:
        model = "none"
    settings = get_preset(preset)
    overrides = {key: value for key, value in (preset_overrides or {}).items() if value is not None}
    if "rl_steps" in overrides:
        overrides["rl_epochs"] = None
    settings = replace(settings, **overrides)
    settings = replace(settings, optim=resolve_optimizer(settings.optim))
    given = {key: value for key, value in fields.items() if value is not None}
    if algo in ALGORITHMS and ALGORITHMS[algo].needs_model:
        given["dtype"] = _resolve_dtype(given.get("dtype"))
    spec = canonical(RunSpec(algo=algo, model=model, settings=settings, **given))
    if spec.algo in RL_ALGORITHMS:
        spec = _resolve_rl(spec, "loss_type" in given)
    return spec


DTYPES = ("float32", "bfloat16", "float16")


def _resolve_dtype(dtype: str | None) -> str:
    """A model dtype by name, or the device's default when None (`bench.models.backbones.load_backbone`'s "auto")."""
    if dtype is None:
        from bench.models.backbones import default_dtype

        return default_dtype()
    if dtype not in DTYPES:
        raise UnknownNameError("dtype (--dtype)", dtype, list(DTYPES))
    return dtype


def _default_loss_type(algo: str) -> str:
    return GSPO_LOSS_TYPE if algo == "gspo" else DEFAULT_LOSS_TYPE


def _resolve_rl(spec: RunSpec, loss_type_given: bool) -> RunSpec:
    """Fill the RL settings left open: clip range, loss aggregation, steps derived from epochs."""
    if spec.reward_signal not in REWARD_SIGNALS:
        raise UnknownNameError("reward signal", spec.reward_signal, list(REWARD_SIGNALS))
    transformers_scheduler(spec.settings.rl_lr_scheduler, spec.settings.rl_warmup_ratio)  # names checked here
    if spec.algo == "gspo" and loss_type_given and spec.loss_type != GSPO_LOSS_TYPE:
        raise BenchError(f"GSPO's loss is sequence-level (loss_type {GSPO_LOSS_TYPE!r}: one ratio per sequence, "
                         "averaged per sequence); --loss-type applies to grpo and rank_grpo")
    loss_type = spec.loss_type or _default_loss_type(spec.algo)
    if loss_type not in LOSS_TYPES:
        raise UnknownNameError("loss type", loss_type, list(LOSS_TYPES))
    rl_rollouts = spec.rl_rollouts or RL_ROLLOUTS[0]
    if rl_rollouts not in RL_ROLLOUTS:
        raise UnknownNameError("RL rollout path (--rl-rollouts)", rl_rollouts, list(RL_ROLLOUTS))
    if spec.backend == "vllm" and rl_rollouts != "engine":
        raise BenchError("--backend vllm trains with the shared rollout engine (--rl-rollouts engine): TRL's own "
                         "colocated vLLM runs a float32 policy in bf16 and cannot sync weights on CPU")
    clip = CLIPPING[spec.algo]
    spec = replace(spec, loss_type=loss_type, rl_rollouts=rl_rollouts,
                   epsilon_low=clip.low if spec.epsilon_low is None else spec.epsilon_low,
                   epsilon_high=clip.high if spec.epsilon_high is None else spec.epsilon_high)
    settings = spec.settings
    if settings.rl_steps is None:
        if settings.rl_epochs is None:
            raise BenchError(f"preset {settings.name!r} sets neither rl_steps nor rl_epochs")
        from bench.data.datasets import load_dataset

        n_train = len(load_dataset(spec.dataset, spec.catalog).split("train"))
        steps = max(1, math.ceil(settings.rl_epochs * n_train / settings.prompts_per_step))
        spec = replace(spec, settings=replace(settings, rl_steps=steps))
    return spec


RL_ALGORITHMS = ("grpo", "gspo", "rank_grpo")
RL_ROLLOUTS = ("engine", "trl")
"""RL generation paths (`RunSpec.rl_rollouts`); the first is the default."""
REWARD_SIGNALS = ("real", "shuffled")
LORA_FIELDS = ("lora_r", "lora_alpha", "lora_targets")
RL_SETTINGS = ("rl_steps", "rl_lr", "num_generations", "prompts_per_step", "beta", "temperature", "mu", "rl_epochs",
               "rl_micro_batch", "rl_adam_beta2", "rl_lr_scheduler", "rl_warmup_ratio")


def canonical(spec: RunSpec) -> RunSpec:
    """Reset settings a method does not use to their defaults, so that equal runs get equal ids: an SFT run
    started by `--algo grpo --steps 50` and one started by `--algo rank_grpo --reward log_decay` are the same run."""
    if spec.algo not in RL_ALGORITHMS:
        preset = get_preset(spec.preset)
        spec = replace(spec, settings=replace(spec.settings, **{name: getattr(preset, name) for name in RL_SETTINGS}),
                       epsilon_low=None, epsilon_high=None, loss_type=None, rl_rollouts=None)
    if spec.algo not in RL_ALGORITHMS:
        spec = replace(spec, reward_signal="real")
    if spec.algo in ALGORITHMS and not ALGORITHMS[spec.algo].needs_model:
        spec = replace(spec, dtype=None)
    if spec.algo != "rank_grpo":
        spec = replace(spec, reward="exp_inf", length_shaping=True, missing_rank_credit=False)
    if spec.lora_r == 0 or (spec.algo in ALGORITHMS and not ALGORITHMS[spec.algo].trained):
        spec = replace(spec, lora_r=0, lora_alpha=None, lora_targets="all-linear")
    elif spec.lora_alpha is None:
        spec = replace(spec, lora_alpha=2.0 * spec.lora_r)
    return spec


VARIANT_SUFFIXES = ("log_decay", "noshaping", "mrc", "mu<N>", "null")
"""The `+suffix` variants a method name may carry where a grid names its methods (`bench matrix --algos`)."""


def parse_method(label: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A method name as reports print it -> (algorithm, spec fields, preset overrides): `rank_grpo+mrc+mu2` ->
    ("rank_grpo", {"missing_rank_credit": True}, {"mu": 2}); the inverse of `RunSpec.method_label` for the variants
    in VARIANT_SUFFIXES (clip range and loss type stay flags). Raises UnknownNameError / BenchError naming the part."""
    algo, *suffixes = label.strip().split("+")
    if algo not in ALGORITHMS:
        raise UnknownNameError("algorithm", algo, list(ALGORITHMS))
    fields: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    for suffix in suffixes:
        if algo == "rank_grpo" and suffix == "log_decay":
            fields["reward"] = suffix
        elif algo == "rank_grpo" and suffix == "noshaping":
            fields["length_shaping"] = False
        elif algo == "rank_grpo" and suffix == "mrc":
            fields["missing_rank_credit"] = True
        elif algo in RL_ALGORITHMS and re.fullmatch(r"mu[1-9][0-9]*", suffix):
            overrides["mu"] = int(suffix[2:])
        elif algo in RL_ALGORITHMS and suffix == "null":
            fields["reward_signal"] = "shuffled"
        else:
            raise BenchError(f"method {label!r}: no variant '+{suffix}' of {algo} (variants: "
                             f"{', '.join(VARIANT_SUFFIXES)}; log_decay, noshaping and mrc are rank_grpo's, mu<N> and null any RL "
                             "method's)")
    return algo, fields, overrides


def sibling_spec(spec: RunSpec, algo: str) -> RunSpec:
    """The run of `algo`, in its published form (no variant flags), with `spec`'s backbone, dataset, seed and preset
    settings, named as `bench run` names it: an RL run's SFT warm start, and the runs `bench run` prints a finished
    run beside (`bench.runs.compare`)."""
    model = spec.model if ALGORITHMS[algo].needs_model else "none"
    sibling = canonical(replace(spec, algo=algo, model=model, reward="exp_inf", length_shaping=True,
                                missing_rank_credit=False, reward_signal="real", epsilon_low=None, epsilon_high=None, loss_type=None))
    return _resolve_rl(sibling, False) if algo in RL_ALGORITHMS else sibling


def spec_from_json(data: dict[str, Any]) -> RunSpec:
    """Inverse of `RunSpec.to_json` (reports read spec.json back)."""
    data = dict(data)
    data["settings"] = Preset(**data["settings"])
    return RunSpec(**data)
