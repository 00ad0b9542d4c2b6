"""One table's numbers: every method's cells with two-level bootstrap CIs, and the testing family on the primary
metric, Holm-corrected. By default the family is each method against the baseline and against the reference method,
and each RL method against its null control `<method>+null`, where that ran. A family declared before the runs
(`AnalysisOptions.family`, `bench report --family`) replaces it: Holm runs over the declared comparisons only, so
that a family small enough for the seeds' p floor can reach alpha (issue 27: 5 paired seeds cannot go below p
0.0625); the default pairs outside it keep their CIs, P(better) and raw p, marked undeclared, with no test claimed.

Only the primary metric is tested (one declared metric, NDCG@20 by default; Holm 1979 over the family of
comparisons): the other metrics get intervals, not marks. A comparison is `b` (the method) against `a` (the baseline
or reference), `diff` = mean(b) - mean(a), `prob_improvement` = P(a run of b beats a run of a). `TableAnalysis.to_json`
is the public `report.json` contract (README, "Machine-readable report").
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.report.data import (
    TABLE_COLUMNS,
    Group,
    RunRecord,
    is_deterministic,
    sft_start,
)
from bench.report.stats import (
    Interval,
    SeedSample,
    UnitPower,
    draw_seeds,
    holm,
    p_floor,
    permutation_p_value,
    probability_of_improvement,
    seed_interval,
    seed_replicates,
    unit_power,
    widened_interval,
)

REFERENCE_METHOD = "rank_grpo"
RELIABLE_SEEDS = 5
"""Below this many seeds a trained method's interval is flagged unreliable (the seed bootstrap underestimates)."""
POWER = 0.8


@dataclass(frozen=True)
class AnalysisOptions:
    primary: str = "ndcg@20"
    baseline: str = "popularity"
    reference: str = REFERENCE_METHOD
    alpha: float = 0.05
    n_bootstrap: int = 10_000
    n_permutations: int = 10_000
    seed: int = 0
    family: tuple[str, ...] = ()
    """Declared comparisons, each `method:comparator`; empty: the default family (module docstring)."""


def parse_family(entries: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """`method:comparator` entries -> (comparator, method) pairs; a malformed entry is a one-line error naming
    `--family`."""
    pairs = []
    for entry in entries:
        parts = [part.strip() for part in entry.split(":")]
        if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
            raise BenchError(f"--family {entry!r}: expected METHOD:COMPARATOR, two different method labels "
                             f"(e.g. rank_grpo:sft)")
        pairs.append((parts[1], parts[0]))
    return tuple(pairs)


@dataclass(frozen=True)
class MethodRuns:
    """A method's runs as the statistics see them: one run when deterministic, whatever the number of folders."""

    name: str
    runs: tuple[RunRecord, ...]
    n_folders: int
    deterministic: bool

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def unreliable(self) -> bool:
        return not self.deterministic and self.n_runs < RELIABLE_SEEDS


@dataclass(frozen=True)
class Comparison:
    """Method `b` against `a` on one metric (`role`: which comparator `a` is)."""

    a: str
    b: str
    role: str
    metric: str
    diff: Interval
    p_value: float
    p_holm: float | None
    """Holm-adjusted over the family; None when the comparison is outside a declared family."""
    significant: bool
    prob_improvement: Interval
    unit: str
    paired: bool
    floor: float
    mdd: float | None
    """Minimum detectable difference of the test that ran, at its own unit (`bench.report.stats.UnitPower`)."""
    units_needed: int | None
    """Units per method (seeds; examples when both are deterministic) at which the observed difference would be
    detectable at alpha with 80% power, before Holm; None: beyond 100,000 or no difference."""
    in_family: bool = True
    """False for a default pair left out of a declared family: descriptive only."""


@dataclass(frozen=True)
class TableAnalysis:
    group: Group
    options: AnalysisOptions
    methods: dict[str, MethodRuns]
    cells: dict[tuple[str, str], Interval]
    comparisons: tuple[Comparison, ...]
    baseline: str | None
    reference: str | None
    n_examples: int
    notes: tuple[str, ...]

    @property
    def family(self) -> tuple[Comparison, ...]:
        """The comparisons Holm ran over (the tested family)."""
        return tuple(c for c in self.comparisons if c.in_family)

    def versus(self, name: str, other: str) -> Comparison | None:
        """The comparison of `name` against `other`, oriented so that diff = name - other and P = P(name
        beats other); None when the pair is not in the family."""
        found = next((c for c in self.comparisons if {c.a, c.b} == {name, other}), None)
        if found is None or found.b == name:
            return found
        diff, better = found.diff, found.prob_improvement
        return replace(found, a=other, b=name, diff=Interval(-diff.mean, -diff.high, -diff.low),
                       prob_improvement=Interval(1 - better.mean, 1 - better.high, 1 - better.low))

    def to_json(self) -> dict[str, Any]:
        """The `report.json` entry of this table (README: "Machine-readable report")."""
        key = self.group.key
        cells = [{"method": name, "metric": column, "mean": cell.mean, "ci_low": cell.low, "ci_high": cell.high,
                  "n_runs": self.methods[name].n_runs, "deterministic": self.methods[name].deterministic}
                 for (name, column), cell in self.cells.items()]
        comparisons = [{"a": c.a, "b": c.b, "metric": c.metric, "diff": c.diff.mean, "ci_low": c.diff.low,
                        "ci_high": c.diff.high, "p_value": c.p_value, "p_holm": c.p_holm,
                        "significant": c.significant, "prob_improvement": c.prob_improvement.mean,
                        "in_family": c.in_family}
                       for c in self.comparisons]
        return {"dataset": key.dataset, "model": key.model, "preset": key.preset, "primary": self.options.primary,
                "cells": cells, "comparisons": comparisons}


def null_control(name: str) -> str:
    """The label of a method's null control (`grpo` -> `grpo+null`; `RunSpec.method_label` puts `+null` last)."""
    return f"{name}+null"


def _find(methods: dict[str, MethodRuns], label: str, notes: list[str], role: str) -> str | None:
    """The method named `label` (or its first digest-qualified configuration)."""
    names = [name for name in methods if name == label or name.startswith(f"{label} [")]
    if not names:
        notes.append(f"No {label} runs: no comparisons against the {role}.")
        return None
    if len(names) > 1:
        notes.append(f"Several {label} configurations: the {role} is {names[0]}.")
    return names[0]


def _declared(family: Sequence[tuple[str, str]], methods: dict[str, MethodRuns], pairs: list[tuple[str, str, str]],
              notes: list[str]) -> list[set[str]] | None:
    """The declared family as unordered pairs (None: no family declared, every pair is tested). A declared pair
    outside the default ones is added to `pairs` (role `declared`); one whose method did not run in this table is
    left out with a note."""
    if not family:
        return None
    declared = []
    for comparator, method in family:
        missing = [name for name in (comparator, method) if name not in methods]
        if missing:
            notes.append(f"Declared comparison {method}:{comparator} left out: no {' or '.join(missing)} runs in "
                         f"this table.")
            continue
        declared.append({comparator, method})
        if not any({a, b} == {comparator, method} for a, b, _ in pairs):
            pairs.append((comparator, method, "declared"))
    return declared


def _method_runs(group: Group) -> dict[str, MethodRuns]:
    methods = {}
    for name, runs in group.methods.items():
        deterministic = is_deterministic(runs)
        methods[name] = MethodRuns(name, runs[:1] if deterministic else runs, len(runs), deterministic)
    return methods


def _common_ids(methods: dict[str, MethodRuns]) -> list[str]:
    id_sets = [set(run.example_ids) for method in methods.values() for run in method.runs]
    return sorted(set.intersection(*id_sets))


def _sample(method: MethodRuns, column: str, ids: Sequence[str]) -> SeedSample:
    tops, bottoms = [], []
    for run in method.runs:
        position = {example_id: index for index, example_id in enumerate(run.example_ids)}
        rows = [position[example_id] for example_id in ids]
        top, bottom = run.columns[column]
        tops.append(top[rows])
        bottoms.append(bottom[rows])
    return SeedSample(np.array(tops), np.array(bottoms), tuple(run.spec.seed for run in method.runs))


def _share_starts(first: MethodRuns, second: MethodRuns, records: Sequence[RunRecord]) -> bool:
    """True when both are trained with the same seeds and each seed's two runs share (or are) one SFT start."""
    if first.deterministic or second.deterministic:
        return False
    if [run.spec.seed for run in first.runs] != [run.spec.seed for run in second.runs]:
        return False
    for x, y in zip(first.runs, second.runs, strict=True):
        start_x = x if x.spec.algo == "sft" else sft_start(records, x)
        start_y = y if y.spec.algo == "sft" else sft_start(records, y)
        if start_x is None or start_x is not start_y:
            return False
    return True


@dataclass(frozen=True)
class _Resampled:
    """A method's bootstrap material on one metric: seed replicates (seeds, R), its seed draws (R, seeds)."""

    sample: SeedSample
    replicates: np.ndarray
    draws: np.ndarray

    def seed_values(self, draws: np.ndarray) -> np.ndarray:
        return self.replicates[draws, np.arange(self.replicates.shape[1])[:, None]]


def _compare(a: MethodRuns, b: MethodRuns, first: _Resampled, second: _Resampled, records: Sequence[RunRecord],
             options: AnalysisOptions) -> tuple[Interval, Interval, float, str, bool, float, UnitPower]:
    """(diff CI, P(b > a) CI, p-value, unit, paired, p floor, the test's unit power) of b against a."""
    x, y = first.sample.per_seed(), second.sample.per_seed()
    if a.deterministic and b.deterministic:
        unit, paired = "test examples (both deterministic)", True
        units_a, units_b = first.sample.numerators[0], second.sample.numerators[0]
        floor = p_floor(first.sample.numerators.shape[1], 0, True, options.n_permutations)
        draws_a, draws_b = first.draws, second.draws
    elif a.deterministic or b.deterministic:
        unit, paired = "seeds against one deterministic run", True
        n = max(x.size, y.size)
        units_a, units_b = np.resize(x, n), np.resize(y, n)
        floor = p_floor(n, n, True, options.n_permutations)
        draws_a, draws_b = first.draws, second.draws
    else:
        paired = _share_starts(a, b, records)
        unit = "seeds, paired by SFT start" if paired else "seeds, unpaired"
        units_a, units_b = x, y
        floor = p_floor(x.size, y.size, paired, options.n_permutations)
        draws_a, draws_b = (first.draws, first.draws) if paired else (first.draws, second.draws)
    p = permutation_p_value(units_a, units_b, paired, options.n_permutations, options.seed)
    values_a, values_b = first.seed_values(draws_a), second.seed_values(draws_b)
    differences = values_b.mean(axis=1) - values_a.mean(axis=1)
    n_seeds = min(x.size if x.size > 1 else y.size, y.size if y.size > 1 else x.size)
    example_only = second.replicates.mean(axis=0) - first.replicates.mean(axis=0)
    diff = widened_interval(float(y.mean() - x.mean()), differences, example_only, n_seeds, (-1.0, 1.0))
    better = probability_of_improvement(values_a, values_b)
    improvement = widened_interval(float(probability_of_improvement(x, y)), better,
                                   probability_of_improvement(first.replicates.T, second.replicates.T), n_seeds)
    return diff, improvement, p, unit, paired, floor, unit_power(units_a, units_b, paired)


def analyse(group: Group, options: AnalysisOptions = AnalysisOptions()) -> TableAnalysis:
    """Cells for every method and column, and the Holm-corrected family on the primary metric."""
    notes: list[str] = []
    methods = _method_runs(group)
    records = [run for runs in group.methods.values() for run in runs]
    ids = _common_ids(methods)
    scored = {len(run.example_ids) for run in records}
    if scored != {len(ids)}:
        notes.append(f"Intervals and tests use the {len(ids)} test examples every run scored.")
    names = list(methods)
    samples = [_sample(methods[name], column, ids) for column in TABLE_COLUMNS for name in names]
    replicates = seed_replicates(samples, options.n_bootstrap, options.seed)
    resampled: dict[tuple[str, str], _Resampled] = {}
    for index, (sample, values) in enumerate(zip(samples, replicates, strict=True)):
        column, name = TABLE_COLUMNS[index // len(names)], names[index % len(names)]
        draws = draw_seeds(sample.n_seeds, options.n_bootstrap, options.seed + 1 + index % len(names))
        resampled[(name, column)] = _Resampled(sample, values, draws)
    cells = {key: seed_interval(found.sample, found.replicates, found.draws) for key, found in resampled.items()}
    baseline = _find(methods, options.baseline, notes, "baseline")
    reference = _find(methods, options.reference, notes, "reference method")
    pairs: list[tuple[str, str, str]] = []
    for role, other in (("reference", reference), ("baseline", baseline)):
        for name in names:
            if other is not None and name != other and not any({name, other} == {a, b} for a, b, _ in pairs):
                pairs.append((other, name, role))
    for name in names:
        control = null_control(name)
        if control in methods and not any({name, control} == {a, b} for a, b, _ in pairs):
            pairs.append((control, name, "null"))
    declared = _declared(parse_family(options.family), methods, pairs, notes)
    primary = options.primary
    raw = [(a, b, role, _compare(methods[a], methods[b], resampled[(a, primary)], resampled[(b, primary)], records,
                                 options)) for a, b, role in pairs]
    in_family = [declared is None or {a, b} in declared for a, b, _ in pairs]
    adjusted = iter(holm([result[2] for (*_, result), tested in zip(raw, in_family, strict=True) if tested]))
    comparisons = []
    for (a, b, role, (diff, improvement, p, unit, paired, floor, power)), tested in zip(raw, in_family, strict=True):
        p_holm = next(adjusted) if tested else None
        comparisons.append(Comparison(
            a, b, role, primary, diff, p, p_holm, p_holm is not None and p_holm < options.alpha, improvement, unit,
            paired, floor, power.mdd(options.alpha, POWER), power.units_needed(diff.mean, options.alpha, POWER),
            tested))
    return TableAnalysis(group, options, methods, cells, tuple(comparisons), baseline, reference, len(ids),
                         tuple(notes))

