"""What `bench run` prints when a run is done: the run beside the runs it is naturally read against.

Beside any run: its SFT start and its null control (for an RL run: the same run with shuffled rewards, or the
real-reward run beside a null control), GRPO and Rank-GRPO in their published forms, popularity and the
`random` chance floor, each with the same backbone, dataset, seed and preset settings (`sibling_spec`), and each only
where its folder under the same results directory is complete: nothing is run for the comparison. The numbers are
one seed's test metrics, so a printed difference is not a verdict; `bench report` gives intervals and tests over
seeds (and the table says so).
"""

from dataclasses import dataclass, replace
from pathlib import Path

from bench.runs.folders import RunFolder, read_json, runs_dir
from bench.runs.specs import RL_ALGORITHMS, RunSpec, sibling_spec

COMPARED = ("sft", "grpo", "rank_grpo", "popularity", "random")
"""The runs a finished run is shown beside, in this order, when they exist."""
COLUMNS = {"ndcg@20": "N@20", "recall@20": "R@20", "ndcg@5": "N@5", "format_rate": "format",
           "in_catalog_rate": "in-cat", "duplicate_rate": "dup"}
"""The test metrics shown, in order, each with the header printed for it: headers no wider than the values, so that
seven columns fit an 80-column terminal with the method names whole (LEGEND spells them out under the table)."""
LEGEND = ", ".join(f"{header} = {metric}" for metric, header in COLUMNS.items())


@dataclass(frozen=True)
class Comparison:
    """(label, test metrics) of the finished run first, then of each complete sibling run; the siblings not run."""

    rows: tuple[tuple[str, dict[str, object]], ...]
    missing: tuple[str, ...]

    @property
    def note(self) -> str:
        """The caveat printed under the table."""
        hint = f"; not run yet with these settings: {', '.join(self.missing)}" if self.missing else ""
        return ("one seed, one run each: these differences are not tests (bench report gives intervals and "
                f"seed-level tests){hint}")


def compare(spec: RunSpec, metrics: dict[str, object], results_dir: Path) -> Comparison:
    """The finished run `spec` (with its `metrics`) beside the complete runs of COMPARED with its settings (an
    SFT start only for RL runs)."""
    rows: list[tuple[str, dict[str, object]]] = [(spec.method_label, metrics)]
    missing: list[str] = []
    if spec.algo in RL_ALGORITHMS:
        control = null_control_pair(spec)
        folder = RunFolder(runs_dir(results_dir) / control.run_id)
        if folder.is_complete():
            rows.append((control.method_label, read_json(folder.metrics_path)))
        else:
            missing.append(control.method_label)
    for algo in COMPARED:
        if algo == spec.algo or (algo == "sft" and spec.algo not in RL_ALGORITHMS):
            continue
        sibling = sibling_spec(spec, algo)
        folder = RunFolder(runs_dir(results_dir) / sibling.run_id)
        if folder.is_complete():
            rows.append(("sft start" if algo == "sft" else algo, read_json(folder.metrics_path)))
        else:
            missing.append(algo)
    return Comparison(tuple(rows), tuple(missing))


def null_control_pair(spec: RunSpec) -> RunSpec:
    """The other half of an RL run's control pair: its null control (`+null`, shuffled rewards), or for a null
    control the same run with the real reward."""
    return replace(spec, reward_signal="real" if spec.reward_signal == "shuffled" else "shuffled")
