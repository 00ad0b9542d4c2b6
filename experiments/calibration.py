"""`bench calibrate`: the RL settings of a table, fixed by rules that look at SFT and null-control runs only.

Two rules, written down before any method is compared (results/testbed/low-budget/README.md, DESIGN.md "Controls"):

- **Temperature** (`probe_temperatures`, `choose_temperature`): from each SFT start, G completions per training
  prompt are sampled at every candidate temperature and scored with the training reward (`ListRewards`: NDCG@20,
  positions kept). A temperature qualifies when at most `MAX_TIED` of the groups tie (all G rewards equal: GRPO has
  no signal there) and at most `MAX_TIED` tie at every rank (Rank-GRPO has none), and when the best of G beats the
  greedy answer on average (a group holds lists better than what greedy evaluation already sees). Of those, the
  rule takes the one where the best of G beats greedy by the most: where sampling finds the most improvement to
  reinforce.
- **Learning rate** (`null_drift`, `choose_learning_rate`): the null control (`+null`, shuffled rewards) of each
  candidate rate, from the same SFT starts, shows what the update alone does. Its drift is the change of its
  monitor-validation NDCG@20 from RL step 0 to its last step, per seed. A rate qualifies when the drift's mean over
  seeds lies within `DRIFT_TOLERANCE` of zero with 95% confidence (|mean| + t x SE <= tolerance, an equivalence
  bound, so that few noisy seeds cannot pass it); the rule takes the largest such rate: the fastest learning that
  noise alone does not move. When no rate qualifies it takes the smallest candidate, and says so.

- **Learning rate by gain** (`rl_gains`, `choose_learning_rate_by_gain`; results/testbed/PROCEDURE.md rule C): the
  real-reward runs of every RL method at each candidate rate, their monitor NDCG@20 gain (last validation minus
  step 0) averaged over methods alike (one number per rate, no method read alone); the rate with the largest
  averaged gain among those whose runs stay formatted (`MIN_FORMAT_RATE`) and do not repeat titles
  (`MAX_DUPLICATE_RATE`). The paper-regime testbed uses it; the null-drift rule capped its rate where the null
  stays flat, which under Adam forbids any rate at which RL moves the policy in 80 steps.

The first two rules read no real-reward RL run, and no rule reads the test split. The probe prompts are the first `n_prompts` of the
training split, the drift is measured on the monitor validation subset (`algorithms.training.validation_subsets`).
"""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.data.dataset import Dataset
from bench.runs.folders import RunFolder, read_json, runs_dir
from bench.runs.specs import RL_ALGORITHMS, RunSpec, spec_from_json

MAX_TIED = 0.30
"""Largest share of tied groups a temperature may leave (DESIGN.md, results/testbed/low-budget/README.md "Signal")."""
DRIFT_TOLERANCE = 0.02
"""Largest null-control drift of monitor NDCG@20, with 95% confidence, that a learning rate may show."""
MIN_FORMAT_RATE = 0.95
MAX_DUPLICATE_RATE = 0.20
"""Rule C's health bounds on the averaged final monitor point: the lists stay formatted and do not repeat titles."""


@dataclass(frozen=True)
class TemperatureRow:
    """What the SFT policy's samples at one temperature offer RL, averaged over the probed prompts (and seeds)."""

    temperature: float
    sampled_ndcg: float
    """Mean NDCG@20 of the sampled completions."""
    best_of_g_ndcg: float
    """Mean over prompts of the best of the G completions' NDCG@20."""
    greedy_ndcg: float
    """Mean NDCG@20 of the greedy answers to the same prompts."""
    tied_share: float
    """Share of groups whose G rewards all tie (no GRPO signal)."""
    rank_tied_share: float
    """Share of groups whose G hits tie at every rank (no Rank-GRPO signal)."""
    no_hit_share: float
    """Share of groups in which no completion names a ground-truth item (every reward 0): ties that more samples
    of a policy that never hits cannot break."""
    groups: int
    """Groups probed (prompts x seeds): what the shares are fractions of."""

    @property
    def best_of_g_gain(self) -> float:
        return self.best_of_g_ndcg - self.greedy_ndcg

    @property
    def tied_interval(self) -> tuple[float, float]:
        """95% Wilson interval of the tied share over the probed groups (scipy's `binomtest`): 32 prompts leave
        about +-17 points, so a share near `MAX_TIED` is not a verdict either way."""
        from scipy.stats import binomtest

        if self.groups == 0:
            return 0.0, 1.0
        interval = binomtest(round(self.tied_share * self.groups), self.groups).proportion_ci(method="wilson")
        return float(interval.low), float(interval.high)


def probe_temperatures(backbone: Any, dataset: Dataset, spec: RunSpec, temperatures: Sequence[float],
                       n_prompts: int, cache_dir: Path) -> list[TemperatureRow]:
    """Sample `spec.settings.num_generations` completions per prompt for the first `n_prompts` distinct training
    prompts at each temperature (seed `spec.seed`, through the shared engine and rollout cache), and greedy answers
    once; score them with the training reward."""
    from algorithms.rl import ListRewards
    from bench.models.prompt_trim import trim_prompt
    from bench.models.rollout_cache import RolloutCache
    from bench.models.rollouts import make_engine
    from bench.models.sampling import SamplingSettings

    settings = spec.settings
    distinct: dict[str, Any] = {}
    for example in dataset.split("train"):
        if len(distinct) == n_prompts:
            break
        distinct.setdefault(example.prompt_key, example)
    examples = list(distinct.values())
    rewards = ListRewards({example.id: example for example in examples}, dataset.catalog)
    prompts = [trim_prompt(backbone.tokenizer, example.prompt, settings.max_prompt_tokens) for example in examples]
    engine = make_engine(spec.backend, backbone, batch_size=settings.eval_batch_size,
                         cache=RolloutCache(cache_dir / "rollouts"), progress=False)
    greedy = engine.generate(prompts, SamplingSettings(max_new_tokens=settings.max_new_tokens), spec.seed)
    greedy_ndcg = _mean([rewards.score_text(texts[0], example.id) for example, texts in zip(examples, greedy,
                                                                                           strict=True)])
    rows = []
    for temperature in temperatures:
        sampling = SamplingSettings(max_new_tokens=settings.max_new_tokens, temperature=temperature,
                                    num_return_sequences=settings.num_generations)
        groups = engine.generate(prompts, sampling, spec.seed)
        scores, hits = [], []
        for example, texts in zip(examples, groups, strict=True):
            hits.append([tuple(row) for row in rewards.hits([example.prompt] * len(texts), texts,
                                                            [example.id] * len(texts))])
            scores.append([rewards.ndcg(row, example.id) for row in hits[-1]])
        rows.append(TemperatureRow(
            temperature, _mean([_mean(group) for group in scores]), _mean([max(group) for group in scores]),
            greedy_ndcg, _mean([float(len(set(group)) == 1) for group in scores]),
            _mean([float(len(set(group)) == 1) for group in hits]),
            _mean([float(max(group) == 0.0) for group in scores]), len(examples)))
    return rows


def average_rows(per_seed: Sequence[Sequence[TemperatureRow]]) -> list[TemperatureRow]:
    """Rows of several SFT starts (seeds) averaged temperature by temperature; every seed probes the same number of
    prompts, so the averaged shares are shares of all their groups together."""
    averaged = []
    for rows in zip(*per_seed, strict=True):
        averaged.append(TemperatureRow(rows[0].temperature, *(
            _mean([getattr(row, name) for row in rows])
            for name in ("sampled_ndcg", "best_of_g_ndcg", "greedy_ndcg", "tied_share", "rank_tied_share",
                         "no_hit_share")),
            sum(row.groups for row in rows)))
    return averaged


def choose_temperature(rows: Sequence[TemperatureRow], max_tied: float = MAX_TIED) -> float | None:
    """The temperature rule (module docstring); None when no candidate qualifies."""
    qualified = [row for row in rows
                 if row.tied_share <= max_tied and row.rank_tied_share <= max_tied and row.best_of_g_gain > 0]
    return max(qualified, key=lambda row: (row.best_of_g_gain, -row.temperature)).temperature if qualified else None


@dataclass(frozen=True)
class DriftRow:
    """The null control of one method at one learning rate: its drift per seed and their summary."""

    method: str
    lr: float
    drifts: tuple[float, ...]

    @property
    def mean(self) -> float:
        return _mean(self.drifts)

    @property
    def bound(self) -> float:
        """|mean| + t(0.975, n-1) x SE over seeds: the drift is within this of zero with 95% confidence (inf with
        fewer than two seeds)."""
        n = len(self.drifts)
        if n < 2:
            return math.inf
        from scipy.stats import t

        spread = math.sqrt(sum((d - self.mean) ** 2 for d in self.drifts) / (n - 1))
        return abs(self.mean) + float(t.ppf(0.975, n - 1)) * spread / math.sqrt(n)


def _rl_curves(results_dir: Path, reference: RunSpec, signal: str) -> list[tuple[RunSpec, list[dict[str, Any]]]]:
    """Every complete RL run under `results_dir` with reward signal `signal` and the dataset, backbone and settings
    of `reference` but for the learning rate, with its validation curve (at least two points)."""
    settings = replace(reference.settings, rl_lr=0.0)
    found = []
    for folder in sorted(runs_dir(results_dir).glob("*")):
        run = RunFolder(folder)
        if not run.is_complete() or not run.spec_path.is_file():
            continue
        try:
            spec = spec_from_json(read_json(run.spec_path))
        except (TypeError, KeyError, ValueError):  # run folders are untrusted files: a foreign spec is not ours
            continue
        if (spec.reward_signal, spec.dataset, spec.model) != (signal, reference.dataset, reference.model) or \
                replace(spec.settings, rl_lr=0.0) != settings or spec.algo not in RL_ALGORITHMS:
            continue
        curve = run.read_curve()
        if len(curve) >= 2:
            found.append((spec, curve))
    return found


def null_drift(results_dir: Path, reference: RunSpec) -> list[DriftRow]:
    """Every complete null-control run under `results_dir` with the dataset, backbone and settings of `reference`
    but for the learning rate, grouped by method (without `+null`) and learning rate; a run's drift is monitor
    NDCG@20 at its last validation minus at step 0."""
    drifts: dict[tuple[str, float], list[float]] = {}
    for spec, curve in _rl_curves(results_dir, reference, "shuffled"):
        key = (spec.method_label.removesuffix("+null"), spec.settings.rl_lr)
        drifts.setdefault(key, []).append(float(curve[-1]["ndcg@20"]) - float(curve[0]["ndcg@20"]))
    return [DriftRow(method, lr, tuple(values)) for (method, lr), values in sorted(drifts.items())]


@dataclass(frozen=True)
class GainRow:
    """Every real-reward RL method at one learning rate, averaged alike: monitor NDCG@20 gain (last validation minus
    step 0) per (method, seed), and the final format and duplicate rates averaged over those runs."""

    lr: float
    gains: dict[str, tuple[float, ...]]
    """Per method, its gains in seed order."""
    format_rate: float
    duplicate_rate: float

    @property
    def mean_gain(self) -> float:
        """The mean over methods of each method's mean over seeds: every method weighs the same."""
        return _mean([_mean(values) for values in self.gains.values()])

    @property
    def healthy(self) -> bool:
        return self.format_rate >= MIN_FORMAT_RATE and self.duplicate_rate <= MAX_DUPLICATE_RATE


def rl_gains(results_dir: Path, reference: RunSpec) -> list[GainRow]:
    """Rule C's table (results/testbed/PROCEDURE.md): the real-reward RL runs with `reference`'s settings but for
    the learning rate, per learning rate, every method averaged alike."""
    by_lr: dict[float, list[tuple[RunSpec, list[dict[str, Any]]]]] = {}
    for spec, curve in _rl_curves(results_dir, reference, "real"):
        by_lr.setdefault(spec.settings.rl_lr, []).append((spec, curve))
    rows = []
    for lr, runs in sorted(by_lr.items()):
        gains: dict[str, list[float]] = {}
        for spec, curve in sorted(runs, key=lambda run: (run[0].method_label, run[0].seed)):
            gains.setdefault(spec.method_label, []).append(float(curve[-1]["ndcg@20"]) - float(curve[0]["ndcg@20"]))
        finals = [curve[-1] for _, curve in runs]
        rows.append(GainRow(lr, {method: tuple(values) for method, values in gains.items()},
                            _mean([float(point.get("format_rate", 0.0)) for point in finals]),
                            _mean([float(point.get("duplicate_rate", 1.0)) for point in finals])))
    return rows


def choose_learning_rate_by_gain(rows: Sequence[GainRow]) -> float | None:
    """Rule C: of the rates whose averaged runs stay formatted and do not repeat, the one with the largest gain
    averaged over every method alike; None when no rate is healthy."""
    healthy = [row for row in rows if row.healthy]
    return max(healthy, key=lambda row: (row.mean_gain, -row.lr)).lr if healthy else None


def choose_learning_rate(rows: Sequence[DriftRow], tolerance: float = DRIFT_TOLERANCE) -> float | None:
    """The learning-rate rule (module docstring) over every method's null control: the largest rate at which every
    method's null drift is bounded by `tolerance`; None when none is."""
    rates = sorted({row.lr for row in rows})
    passing = [lr for lr in rates if all(row.bound <= tolerance for row in rows if row.lr == lr)]
    return max(passing) if passing else None


@dataclass(frozen=True)
class Calibration:
    """What `bench calibrate` measured and which settings its rules pick (None: no candidate qualified)."""

    temperatures: list[TemperatureRow]
    per_seed: dict[int, list[TemperatureRow]]
    temperature: float | None
    drifts: list[DriftRow]
    learning_rate: float | None
    """The largest qualified rate; the smallest candidate when none qualified (None without null-control runs)."""
    learning_rate_qualified: bool
    rl_temperature: float
    """The rollout temperature of the null-control runs read (the settings given to `bench calibrate`)."""
    gains: list[GainRow]
    """Rule C's table: real-reward RL runs per learning rate, every method averaged alike."""
    learning_rate_by_gain: float | None

    def to_json(self) -> dict[str, Any]:
        return {"rules": {"max_tied": MAX_TIED, "drift_tolerance": DRIFT_TOLERANCE, "text": __doc__},
                "temperatures": [_row_json(row) for row in self.temperatures],
                "per_seed": {str(seed): [_row_json(row) for row in rows] for seed, rows in self.per_seed.items()},
                "temperature": self.temperature,
                "null_drift": [{"method": row.method, "lr": row.lr, "drifts": list(row.drifts), "mean": row.mean,
                                "bound": row.bound if math.isfinite(row.bound) else None} for row in self.drifts],
                "learning_rate": self.learning_rate, "learning_rate_qualified": self.learning_rate_qualified,
                "null_control_temperature": self.rl_temperature,
                "rl_gain": [{"lr": row.lr, "gains": {method: list(values) for method, values in row.gains.items()},
                             "mean_gain": row.mean_gain, "format_rate": row.format_rate,
                             "duplicate_rate": row.duplicate_rate, "healthy": row.healthy} for row in self.gains],
                "learning_rate_by_gain": self.learning_rate_by_gain,
                "gain_rule": {"min_format_rate": MIN_FORMAT_RATE, "max_duplicate_rate": MAX_DUPLICATE_RATE}}


def calibrate(model: str, dataset: str, preset: str, seeds: Sequence[int], temperatures: Sequence[float],
              n_prompts: int, results_dir: Path, overrides: dict[str, Any], fields: dict[str, Any],
              log: Any = print) -> Calibration:
    """Both rules for one (model, dataset, preset) with `overrides`: the SFT start of every seed is built when missing
    (as `bench run --algo sft` would) and probed; the null-control runs already in `results_dir` give the drift."""
    from bench.data.datasets import load_dataset
    from bench.models.backbones import default_cache_dir, load_backbone
    from bench.runs.runner import execute
    from bench.runs.specs import make_spec, sibling_spec

    data = load_dataset(dataset)
    per_seed: dict[int, list[TemperatureRow]] = {}
    for seed in seeds:
        spec = make_spec("grpo", model, preset, overrides, dataset=dataset, seed=seed, **fields)
        sft = sibling_spec(spec, "sft")
        folder = RunFolder(runs_dir(results_dir) / sft.run_id)
        if not folder.is_complete():
            log(f"building the SFT start of seed {seed}: {sft.run_id}")
            execute(sft, results_dir, log=log)
        backbone = load_backbone(str(folder.root / "model"), corpus=data.corpus(),
                                 cache_dir=default_cache_dir() / "backbones")
        per_seed[seed] = probe_temperatures(backbone, data, spec, temperatures, n_prompts, default_cache_dir())
    rows = average_rows(list(per_seed.values()))
    drifts = null_drift(results_dir, spec)
    qualified = choose_learning_rate(drifts)
    fallback = min((row.lr for row in drifts), default=None)
    gains = rl_gains(results_dir, spec)
    return Calibration(rows, per_seed, choose_temperature(rows), drifts,
                       qualified if qualified is not None else fallback, qualified is not None,
                       spec.settings.temperature, gains, choose_learning_rate_by_gain(gains))


def report_lines(calibration: Calibration) -> list[str]:
    """`bench calibrate`'s printout: both tables and what each rule picks."""
    lines = [f"temperature rule: at most {MAX_TIED:.0%} tied groups (GRPO and per rank), best of G above greedy; "
             "the largest best-of-G gain wins",
             f"{'T':>5} {'sampled':>8} {'best-of-G':>9} {'greedy':>7} {'gain':>7} {'tied':>6} {'95% CI':>13} "
             f"{'rank-tied':>9} {'no hit':>6} {'groups':>6}"]
    for row in calibration.temperatures:
        low, high = row.tied_interval
        lines.append(f"{row.temperature:>5.2f} {row.sampled_ndcg:>8.3f} {row.best_of_g_ndcg:>9.3f} "
                     f"{row.greedy_ndcg:>7.3f} {row.best_of_g_gain:>+7.3f} {row.tied_share:>6.1%} "
                     f"{f'[{low:.0%}, {high:.0%}]':>13} {row.rank_tied_share:>9.1%} {row.no_hit_share:>6.1%} "
                     f"{row.groups:>6}")
    lines.append(f"chosen temperature: {calibration.temperature} (mean over {len(calibration.per_seed)} SFT starts)")
    lines.append(f"learning-rate rule: the largest rate whose null controls (at the settings given, temperature "
                 f"{calibration.rl_temperature:g}) drift within ±{DRIFT_TOLERANCE} of their start with 95% "
                 "confidence (monitor NDCG@20, last validation minus step 0)")
    for row in calibration.drifts:
        bound = f"{row.bound:.3f}" if math.isfinite(row.bound) else "n/a (one seed)"
        lines.append(f"  {row.method}+null lr {row.lr:g}: {len(row.drifts)} seeds, drift {row.mean:+.4f}, "
                     f"bound {bound}")
    if not calibration.drifts:
        lines.append("  no complete null-control runs with these settings yet: run `bench matrix --algos "
                     "grpo+null,rank_grpo+null --temperature T --lr ...` with them first")
    qualified = "" if calibration.learning_rate_qualified or calibration.learning_rate is None else \
        " (no candidate qualified: the smallest one, as the rule says)"
    lines.append(f"chosen learning rate: {calibration.learning_rate}{qualified}")
    lines.append(f"learning-rate rule by gain (results/testbed/PROCEDURE.md rule C): the rate with the largest "
                 f"monitor NDCG@20 gain averaged over every real-reward RL method alike, among those whose averaged "
                 f"final format rate >= {MIN_FORMAT_RATE} and duplicate rate <= {MAX_DUPLICATE_RATE}")
    for gain in calibration.gains:
        per_method = ", ".join(f"{method} {_mean(values):+.4f} ({len(values)} seeds)"
                               for method, values in gain.gains.items())
        lines.append(f"  lr {gain.lr:g}: mean gain {gain.mean_gain:+.4f} [{per_method}], format "
                     f"{gain.format_rate:.3f}, duplicates {gain.duplicate_rate:.3f}"
                     f"{'' if gain.healthy else ' (unhealthy)'}")
    if not calibration.gains:
        lines.append("  no complete real-reward RL runs with these settings yet")
    lines.append(f"chosen learning rate by gain: {calibration.learning_rate_by_gain}")
    return lines


def _row_json(row: TemperatureRow) -> dict[str, Any]:
    low, high = row.tied_interval
    return {**asdict(row), "tied_ci95": [low, high]}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
