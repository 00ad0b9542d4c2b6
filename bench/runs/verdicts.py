"""What a regression check compares (`bench check`): observations, the bands of the reference document, and the
verdict of every (target, metric).

A *target* is one run of the configuration at one checked seed (`grpo/tiny/synthetic:check seed 0`) or one
method's deterministic probe (`grpo/tiny/synthetic:check probe`, `experiments.probes`). `bench check --update`
observes every target several times: in the reference pass, in every perturbed rerun (another thread count, oneDNN
off, initial weights jittered; `bench.runs.perturb`) and, for runs of a grid with `band_seeds`, at those other seeds
too, which stand in for the chaos another machine adds to a trained run. From that sample each (target, metric)
gets a band:

    centre = mean of the sample;  half-width = max(k x sample std, floor, relative_floor x |centre|)

with (k, floor, relative_floor) from the configuration's `band`, one rule for runs and one for probes. A check
observes the target once; z = (observed - centre) / half-width; |z| <= 1 passes. Outside, a run metric has
`regressed` or `improved` (for `duplicate_rate` lower is better) and a probe value has `changed`: both fail, since
a change of behaviour is never passed silently. The failure says how far outside the band it is, in half-widths,
and what the band was made of.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

LOWER_IS_BETTER = frozenset({"duplicate_rate"})
RL_SHIFT = "rl_shift_steps"
"""A value RL runs have beside their metrics (`bench.runs.check.rl_shift_steps`): checked like a probe value, since
either direction is a change of what RL does, not a better or worse recommender."""
REFERENCE_SOURCE = "reference"
RULE = ("band = centre ± max(k x sample std, floor, relative_floor x |centre|) over the target's sample (reference "
        "pass, every perturbed rerun, and for runs the band seeds); a check fails when an observed value leaves its "
        "band either way (z = (observed - centre) / half-width, |z| > 1).")


@dataclass(frozen=True)
class BandRule:
    """How wide a band is made from a sample: max(k x std, floor, relative_floor x |centre|)."""

    k: float
    floor: float
    relative_floor: float = 0.0

    def half_width(self, centre: float, std: float) -> float:
        return max(self.k * std, self.floor, self.relative_floor * abs(centre))

    def describe(self) -> str:
        relative = f", {self.relative_floor:g} x |centre|" if self.relative_floor else ""
        return f"max({self.k:g} x std, floor {self.floor:g}{relative})"


@dataclass(frozen=True)
class Observation:
    """One observation of a target: a run's metrics (`seed` set) or a probe's values (`seed` None)."""

    algo: str
    model: str
    dataset: str
    seed: int | None
    values: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.algo}/{self.model}/{self.dataset}"

    @property
    def is_probe(self) -> bool:
        return self.seed is None

    @property
    def target(self) -> str:
        return f"{self.key} probe" if self.is_probe else f"{self.key} seed {self.seed}"


@dataclass(frozen=True)
class Pass:
    """One execution of the configuration: what it observed, runs that failed, its label (`reference` or the
    perturbation), thread count and wall time."""

    observations: tuple[Observation, ...]
    failures: tuple[str, ...]
    label: str
    threads: int
    seconds: float


def band(sample: Sequence[float], rule: BandRule) -> dict[str, float]:
    """Centre, sample std (0 for one value), half-width and edges of the band over `sample`."""
    centre = float(np.mean(sample))
    std = float(np.std(sample, ddof=1)) if len(sample) > 1 else 0.0
    half = rule.half_width(centre, std)
    return {"centre": centre, "std": std, "half_width": half, "low": centre - half, "high": centre + half}


def z_score(observed: float, cell: dict[str, Any]) -> float:
    """Where `observed` lies in band units: 0 at the centre, ±1 at the edges."""
    difference = observed - cell["centre"]
    if cell["half_width"] > 0:
        return difference / cell["half_width"]
    return 0.0 if difference == 0 else math.copysign(math.inf, difference)


def collect_samples(reference: Pass, reruns: Sequence[Pass], band_seeds: dict[str, Sequence[int]],
                    metrics: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per target of the reference pass (its checked seeds and probes): the values every pass observed, labelled by
    source (`reference`, a perturbation, `seed N` for a band seed of that method)."""
    by_target: dict[str, list[tuple[str, Observation]]] = {}
    checked = [o for o in reference.observations if o.is_probe or o.seed not in band_seeds.get(o.key, ())]
    for observation in checked:
        by_target[observation.target] = [(REFERENCE_SOURCE, observation)]
    for run_pass in reruns:
        for observation in run_pass.observations:
            if observation.target in by_target:
                by_target[observation.target].append((run_pass.label, observation))
    for observation in reference.observations:
        if not observation.is_probe and observation.seed in band_seeds.get(observation.key, ()):
            for target, sources in by_target.items():
                first = sources[0][1]
                if not first.is_probe and first.key == observation.key:
                    sources.append((f"seed {observation.seed}", observation))
    samples = {}
    for target, sources in by_target.items():
        first = sources[0][1]
        names = value_names(first, metrics)
        samples[target] = {"algo": first.algo, "model": first.model, "dataset": first.dataset, "seed": first.seed,
                           "sources": [source for source, _ in sources],
                           "values": {name: [float(o.values[name]) for _, o in sources] for name in names}}
    return samples


def value_names(observation: Observation, metrics: Sequence[str]) -> list[str]:
    """The values of an observation a check compares: all of a probe's; a run's `metrics`, and `RL_SHIFT` if it
    has one."""
    if observation.is_probe:
        return list(observation.values)
    return [*metrics, *([RL_SHIFT] if RL_SHIFT in observation.values else [])]


def build_reference(samples: dict[str, dict[str, Any]], runs: BandRule, probes: BandRule) -> dict[str, Any]:
    """Every target's band per metric, from its sample (see `collect_samples`)."""
    targets = {}
    for target, sample in samples.items():
        rule = probes if sample["seed"] is None else runs
        cells = {name: {"sample": values, **band(values, rule)} for name, values in sample["values"].items()}
        targets[target] = {**{key: sample[key] for key in ("algo", "model", "dataset", "seed", "sources")},
                           "rule": asdict(rule), "metrics": cells}
    return targets


def leave_one_out(samples: dict[str, dict[str, Any]], runs: BandRule, probes: BandRule) -> list[dict[str, Any]]:
    """For every source of the samples (a perturbed rerun, a band seed, the reference itself): would it have passed
    a check against bands made from the other sources alone? Its worst |z| says by how much."""
    members: dict[str, dict[str, Any]] = {}
    for target, sample in samples.items():
        rule = probes if sample["seed"] is None else runs
        for index, source in enumerate(sample["sources"]):
            member = members.setdefault(source, {"source": source, "passed": True, "worst_z": 0.0, "worst": ""})
            for name, values in sample["values"].items():
                others = values[:index] + values[index + 1:]
                if len(others) < 2:
                    continue
                z = z_score(values[index], band(others, rule))
                if abs(z) > abs(member["worst_z"]):
                    member.update(worst_z=z, worst=f"{target} {name}")
                if abs(z) > 1 and not math.isclose(abs(z), 1.0, rel_tol=1e-9):
                    member["passed"] = False
    return list(members.values())


def describe_band(target: dict[str, Any]) -> str:
    """What a target's band was made of: the rule, how many values and from which sources."""
    rule = BandRule(**target["rule"])
    return f"centre ± {rule.describe()} over {len(target['sources'])}: {', '.join(target['sources'])}"


@dataclass(frozen=True)
class Row:
    """One (target, metric) of a check: the band, what was observed, z and the verdict (`ok`, `regressed`,
    `improved`, `changed`, `missing` or `no reference`)."""

    target: str
    metric: str
    centre: float | None
    half_width: float | None
    observed: float | None
    z: float | None
    verdict: str
    band: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict != "ok"

    def message(self) -> str:
        if self.centre is None or self.observed is None or self.half_width is None or self.z is None:
            return f"{self.target} {self.metric}: {self.verdict}"
        outside = abs(self.z) - 1
        side = "above" if self.z > 0 else "below"
        action = "; run `bench check --update` if intended" if self.verdict in ("improved", "changed") else ""
        return (f"{self.target} {self.metric}: {self.observed:.6g} is {outside:.1f} band half-widths {side} the band "
                f"{self.centre:.6g} ± {self.half_width:.2g} (z = {self.z:+.1f}; {self.band}): {self.verdict}{action}")


def verdict(metric: str, z: float, probe: bool) -> str:
    """`ok` inside the band (|z| <= 1); outside, `changed` for a probe, else `regressed` or `improved`."""
    if abs(z) <= 1 or math.isclose(abs(z), 1.0, rel_tol=1e-9):
        return "ok"
    if probe or metric == RL_SHIFT:
        return "changed"
    better = z < 0 if metric in LOWER_IS_BETTER else z > 0
    return "improved" if better else "regressed"


def compare(reference: dict[str, Any], observations: Iterable[Observation], metrics: Sequence[str]) -> list[Row]:
    """One row per observed target and metric (one `no reference` row for a target the reference lacks)."""
    rows = []
    for observation in sorted(observations, key=lambda o: (o.key, o.is_probe, o.seed or 0)):
        target = reference["targets"].get(observation.target)
        if target is None:
            rows.append(Row(observation.target, "*", None, None, None, None, "no reference"))
            continue
        names = list(target["metrics"]) if observation.is_probe else value_names(observation, metrics)
        for name in names:
            cell, value = target["metrics"].get(name), observation.values.get(name)
            if cell is None or value is None:
                rows.append(Row(observation.target, name, cell and cell["centre"], cell and cell["half_width"],
                                None if value is None else float(value), None, "missing"))
                continue
            z = z_score(float(value), cell)
            rows.append(Row(observation.target, name, cell["centre"], cell["half_width"], float(value), z,
                            verdict(name, z, observation.is_probe), describe_band(target)))
    return rows


@dataclass(frozen=True)
class CheckResult:
    """Every row of a check, the runs that failed to run, and how long the check took."""

    rows: tuple[Row, ...]
    run_failures: tuple[str, ...]
    threads: int
    seconds: float

    @property
    def passed(self) -> bool:
        return not self.run_failures and not any(row.failed for row in self.rows)

    def problems(self) -> list[str]:
        return [*self.run_failures, *(row.message() for row in self.rows if row.failed)]

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "threads": self.threads, "seconds": round(self.seconds, 1),
                "run_failures": list(self.run_failures), "problems": self.problems(),
                "rows": [asdict(row) for row in self.rows]}

    def table(self) -> str:
        """Target, metric, band centre, half-width, observed, z, verdict; one line per row, aligned."""
        def number(value: float | None, form: str) -> str:
            return "-" if value is None else format(value, form)

        header = ("target", "metric", "centre", "± half-width", "observed", "z", "verdict")
        lines = [header] + [(row.target, row.metric, number(row.centre, ".6g"), number(row.half_width, ".2g"),
                             number(row.observed, ".6g"), number(row.z, "+.2f"), row.verdict) for row in self.rows]
        widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
        return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                         for line in lines)
