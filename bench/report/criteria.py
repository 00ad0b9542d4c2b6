"""Calibration of a table's task: can it separate methods at all? Three criteria, fixed before any method is
compared (results/testbed/low-budget/README.md declares them); they say whether differences CAN show, not which method is better.

1. **Headroom.** S, R, C: the `sft`, `random` and `ease` rows' means of the primary metric (`analysis.cells`). Met
   when the lower margin S - R and the upper margin C - S are both at least `HEADROOM_MARGIN`. EASE is the ceiling a
   trained LLM is held to; the planted optimum (the ground truth listed first) scores 1.0 by the definition of NDCG.
   Not measurable when one of the three rows is absent (named).
2. **Signal.** Per RL method (`diagnostics.MethodDiagnostics`): the mean over seeds of the share of groups whose
   rewards all tie over the first 10% of RL steps (`tied.start`, from train_log.jsonl). Met when the published rows
   present (`PUBLISHED`: grpo, rank_grpo) are all at most `diagnostics.TIED_TARGET`; every RL method is listed.
3. **Room at every rank.** sft_k: the `sft` runs' test hit rate at rank k (summary.json `hit_rate_at_rank`), mean
   over seeds; max_k: the share of the first SFT run's test examples (its examples.jsonl `groundtruth`) with at least
   k ground-truth items, the best hit rate a list can reach at rank k. Ranks k in 2..20 with max_k at least
   `ROOM_SHARE` are considered; room_k = max_k - sft_k. Met when room_k is at least `ROOM_MARGIN` at every considered
   rank; not measurable when none is (fewer than 25% of examples have 2+ ground-truth items).

Files are untrusted: an examples.jsonl line that is not a JSON object with a `groundtruth` list is skipped and
counted, a missing file or field makes the criterion not measurable and is named; nothing raises.

report.json, per table, `calibration`: a list of `{criterion, measured, target, met}`, one per criterion in the order
above; `criterion` is "headroom", "signal" or "room"; `target` the rule as text; `met` true, false, or null (not
measurable); numbers are null where missing; every `measured` has `notes` (what was missing or chosen).
- headroom `measured`: `primary`, `sft` / `random` / `ease` (`{method, mean, ci_low, ci_high}` or null),
  `lower_margin` (S - R), `upper_margin` (C - S), `planted_optimum` (1.0).
- signal `measured`: `tied_target`, `published` (the published methods present), `methods[]` (`method`,
  `tied_start`, `n_seeds`, `n_seeds_with_tied`, `meets_target`).
- room `measured`: `sft_method`, `examples_run_id` (whose examples.jsonl), `n_examples`, `lines_skipped`,
  `n_sft_seeds` (with hit rates), `max_hit_rate_at_rank` / `sft_hit_rate_at_rank` (20 floats, rank 1 first),
  `considered_ranks`, `room_at_rank[]` (`rank`, `max`, `sft`, `room`), `min_room`, `min_room_rank`.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.evaluation.metrics import N_RANKS
from bench.report.analysis import TableAnalysis
from bench.report.diagnostics import (
    TIED_TARGET,
    WINDOW,
    GroupDiagnostics,
    hit_rates,
    meets_tied_target,
)
from bench.report.html import Block
from bench.report.stats import Interval
from bench.report.tables import TextTable
from bench.runs.folders import RunFolder, read_untrusted_jsonl

HEADROOM_MARGIN, ROOM_SHARE, ROOM_MARGIN = 0.10, 0.25, 0.05
PUBLISHED = ("grpo", "rank_grpo")
"""The RL rows the testbed publishes: the signal criterion is met when these (where present) are."""
EPS = 1e-9  # a margin equal to its target, up to rounding, meets it
TITLE = "Calibration: can this table separate methods?"
MET_TEXT = {True: "yes", False: "no", None: "not measurable"}


@dataclass(frozen=True)
class Criterion:
    """One criterion as measured on one table; `text` is the Markdown "measured" cell."""

    name: str
    measured: dict[str, Any]
    target: str
    met: bool | None
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"criterion": self.name, "measured": self.measured, "target": self.target, "met": self.met}


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _named(names: Sequence[str], label: str, notes: list[str]) -> str | None:
    """The method named `label`, or its first digest-qualified configuration (noted)."""
    found = [name for name in names if name == label or name.startswith(f"{label} [")]
    if len(found) > 1:
        notes.append(f"several {label} configurations: {found[0]} is used.")
    return found[0] if found else None


def _at_least(value: float, target: float) -> bool:
    return value >= target - EPS


def headroom(analysis: TableAnalysis) -> Criterion:
    primary, notes = analysis.options.primary, []
    rows: dict[str, tuple[str, Interval] | None] = {}
    for label in ("sft", "random", "ease"):
        name = _named(list(analysis.methods), label, notes)
        rows[label] = None if name is None else (name, analysis.cells[(name, primary)])
    measured: dict[str, Any] = {"primary": primary}
    for label, row in rows.items():
        measured[label] = None if row is None else {"method": row[0], "mean": _number(row[1].mean),
                                                    "ci_low": _number(row[1].low), "ci_high": _number(row[1].high)}
    means = {label: None if row is None else measured[label]["mean"] for label, row in rows.items()}
    s, r, c = means["sft"], means["random"], means["ease"]
    lower = None if s is None or r is None else s - r
    upper = None if s is None or c is None else c - s
    missing = [label for label, row in rows.items() if row is None]
    notes += [f"no {label} row." for label in missing]
    measured.update(lower_margin=lower, upper_margin=upper, planted_optimum=1.0, notes=notes)
    met = None if lower is None or upper is None else (_at_least(lower, HEADROOM_MARGIN)
                                                       and _at_least(upper, HEADROOM_MARGIN))
    letters = {"sft": "S", "random": "R", "ease": "C"}
    cells = [f"{letters[label]} = {row[1].mean:.4f}" + ("" if math.isnan(row[1].low) or math.isnan(row[1].high) else
                                                         f" [{row[1].low:.4f}, {row[1].high:.4f}]")
             for label, row in rows.items() if row is not None]
    margins = [f"{name} = {value:+.4f}" for name, value in (("S - R", lower), ("C - S", upper)) if value is not None]
    optimum = ("1.0 by the definition of NDCG" if primary.startswith("ndcg") else
               f"1.0 wherever the ground truth has at most {primary.split('@')[-1]} items")
    text = f"{primary}: " + ", ".join(cells + margins) + f"; planted optimum (ground truth listed first): {optimum}"
    if missing:
        text = f"not measurable: no {' or '.join(missing)} row" + (f"; {text}" if cells else "")
    return Criterion("headroom", measured, f"S - R ≥ {HEADROOM_MARGIN:.2f} and C - S ≥ {HEADROOM_MARGIN:.2f} "
                     f"(S sft, R random, C ease)", met, text)


def signal(diagnostics: GroupDiagnostics) -> Criterion:
    notes: list[str] = []
    methods = [{"method": m.method, "tied_start": m.mean("tied.start"), "n_seeds": len(m.runs),
                "n_seeds_with_tied": m.count("tied.start"), "meets_target": meets_tied_target(m.mean("tied.start"))}
               for m in diagnostics.methods]
    published = [name for label in PUBLISHED if (name := _named([m["method"] for m in methods], label, notes))]
    verdicts = [entry["meets_target"] for entry in methods if entry["method"] in published]
    met = None if not verdicts else False if False in verdicts else None if None in verdicts else True
    unknown = [entry["method"] for entry in methods if entry["tied_start"] is None]
    if not published:
        notes.append(f"no {' or '.join(PUBLISHED)} runs.")
    if unknown:
        notes.append(f"no tied share at the start (train_log.jsonl frac_tied_groups): {', '.join(unknown)}.")
    measured = {"tied_target": TIED_TARGET, "published": published, "methods": methods, "notes": notes}
    values = [f"{entry['method']} {'—' if entry['tied_start'] is None else format(entry['tied_start'], '.3f')}"
              + ("" if entry["n_seeds_with_tied"] == entry["n_seeds"] or entry["tied_start"] is None else
                 f" ({entry['n_seeds_with_tied']} of {entry['n_seeds']} seeds)") for entry in methods]
    text = "tied at start: " + ", ".join(values) if values else "no RL runs"
    if met is None:
        reason = ("no RL runs" if not methods else f"no {' or '.join(PUBLISHED)} runs" if not published else
                  f"no tied share for {', '.join(name for name in published if name in unknown)}")
        known = any(entry["tied_start"] is not None for entry in methods)
        text = f"not measurable: {reason}" + (f"; {text}" if known else "")
    return Criterion("signal", measured, f"tied at start ≤ {TIED_TARGET:.2f} for {' and '.join(PUBLISHED)}", met,
                     text)


@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth sizes of one examples.jsonl's lines, lines skipped, and why none could be read (or None)."""

    sizes: tuple[int, ...] = ()
    skipped: int = 0
    problem: str | None = None


def read_groundtruth(path: Path) -> GroundTruth:
    """Ground-truth list sizes without raising: a line that is not a JSON object with a `groundtruth` list is
    skipped and counted."""
    values, problem = read_untrusted_jsonl(path)
    if problem is not None:
        return GroundTruth(problem=problem)
    sizes, skipped = [], 0
    for line in values:
        truth = line.get("groundtruth") if isinstance(line, dict) else None
        if isinstance(truth, list):
            sizes.append(len(truth))
        else:
            skipped += 1
    return GroundTruth(tuple(sizes), skipped)


def _ranks_text(ranks: Sequence[int]) -> str:
    contiguous = list(ranks) == list(range(ranks[0], ranks[-1] + 1))
    return (f"ranks {ranks[0]}-{ranks[-1]}" if contiguous and len(ranks) > 1 else
            f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}")


def room(analysis: TableAnalysis) -> Criterion:
    target = (f"max_k - sft_k ≥ {ROOM_MARGIN:.2f} at every rank k in 2-{N_RANKS} with max_k ≥ {ROOM_SHARE:.2f} "
              f"(max_k: share of examples with ≥ k ground-truth items)")
    notes: list[str] = []
    measured: dict[str, Any] = {
        "sft_method": None, "examples_run_id": None, "n_examples": 0, "lines_skipped": 0, "n_sft_seeds": 0,
        "max_hit_rate_at_rank": None, "sft_hit_rate_at_rank": None, "considered_ranks": [], "room_at_rank": [],
        "min_room": None, "min_room_rank": None, "notes": notes}

    def missing(reason: str) -> Criterion:
        return Criterion("room", measured, target, None, f"not measurable: {reason}")

    name = _named(list(analysis.methods), "sft", notes)
    if name is None:
        notes.append("no sft row.")
        return missing("no sft row")
    runs = analysis.methods[name].runs
    measured["sft_method"] = name
    rates = [found for run in runs if (found := hit_rates(run)) is not None]
    lacking = [run.spec.run_id for run in runs if hit_rates(run) is None]
    if lacking:
        notes.append(f"no hit_rate_at_rank in summary.json: {', '.join(lacking)}.")
    first = runs[0]
    measured["examples_run_id"] = first.spec.run_id
    truth = read_groundtruth(RunFolder(first.root).examples_path) if first.root else GroundTruth(problem="no run folder")
    measured.update(n_examples=len(truth.sizes), lines_skipped=truth.skipped, n_sft_seeds=len(rates))
    if truth.skipped:
        notes.append(f"{first.spec.run_id}: {truth.skipped} examples.jsonl line{'s' if truth.skipped != 1 else ''} "
                     f"skipped (not a JSON object with a groundtruth list).")
    if truth.problem or not truth.sizes:
        reason = f"{truth.problem or 'no readable example in examples.jsonl'} ({first.spec.run_id})"
        notes.append(reason + ".")
        return missing(reason)
    sizes = np.array(truth.sizes)
    best = [float((sizes >= k).mean()) for k in range(1, N_RANKS + 1)]
    measured["max_hit_rate_at_rank"] = best
    if not rates:
        return missing("no sft hit rates (summary.json hit_rate_at_rank)")
    sft = [float(v) for v in np.mean(rates, axis=0)]
    measured["sft_hit_rate_at_rank"] = sft
    ranks = [k for k in range(2, N_RANKS + 1) if _at_least(best[k - 1], ROOM_SHARE)]
    if not ranks:
        return missing(f"fewer than {ROOM_SHARE:.0%} of examples have 2+ ground-truth items ({best[1]:.0%} of "
                       f"{len(sizes)})")
    rooms = {k: best[k - 1] - sft[k - 1] for k in ranks}
    lowest = min(ranks, key=lambda k: (rooms[k], k))
    measured.update(considered_ranks=ranks, min_room=rooms[lowest], min_room_rank=lowest,
                    room_at_rank=[{"rank": k, "max": best[k - 1], "sft": sft[k - 1], "room": rooms[k]}
                                  for k in ranks])
    seeds = f"{len(rates)} sft seed{'s' if len(rates) != 1 else ''}"
    text = (f"{_ranks_text(ranks)} considered ({len(sizes)} examples, {seeds}); min room {rooms[lowest]:.3f} at "
            f"rank {lowest}; " + ", ".join(f"rank {k}: {rooms[k]:.3f}" for k in ranks))
    return Criterion("room", measured, target, all(_at_least(value, ROOM_MARGIN) for value in rooms.values()), text)


def calibrate(analysis: TableAnalysis, diagnostics: GroupDiagnostics) -> tuple[Criterion, ...]:
    """The three criteria of one table, in the module docstring's order."""
    return headroom(analysis), signal(diagnostics), room(analysis)


def calibration_table(criteria: Sequence[Criterion]) -> TextTable:
    return TextTable(("criterion", "measured", "target", "met"),
                     tuple((c.name, c.text, c.target, MET_TEXT[c.met]) for c in criteria))


def calibration_blocks(criteria: Sequence[Criterion]) -> list[Block]:
    """The section's paragraphs and table (Markdown and HTML)."""
    blocks: list[Block] = [
        ("These criteria are fixed before any method is compared: they say whether differences between methods CAN "
         "show on this table's task, not which method is better. Headroom: the sft row's primary metric above the "
         f"random row's and below the ease row's (the ceiling) by at least {HEADROOM_MARGIN:.2f} each, means "
         "[95% CIs] as in the lead table. Signal: share of RL groups whose rewards all tie over the first "
         f"{WINDOW:.0%} of RL steps (train_log.jsonl), mean over seeds. Room: at each rank k from 2 to 20 that at least "
         f"{ROOM_SHARE:.0%} of test examples can hit (max_k, from the ground-truth sizes of the first SFT run's "
         "examples.jsonl), the best hit rate max_k minus the SFT runs' hit rate sft_k (mean over seeds)."),
        calibration_table(criteria)]
    notes = [f"{c.name}: {note}" for c in criteria for note in c.measured.get("notes", [])]
    if notes:
        blocks.append("Missing or chosen: " + " ".join(notes))
    return blocks
