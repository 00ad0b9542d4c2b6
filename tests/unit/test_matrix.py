"""`bench matrix`: grid expansion, dedupe and wave order; failures recorded and listed; resume; launchers."""

import os
import signal
import sys
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.errors import BenchError, UnknownNameError
from bench.runs.launchers import WORKER_DIED, JobFunction, JobResult, LocalLauncher, SlurmSettings, make_launcher
from bench.runs.matrix import ERROR_FILE, MATRIX_LOG, expand_grid, plan_waves, run_matrix, sft_dependency
from bench.runs.specs import RunSpec, make_spec
from cli import app

runner = CliRunner()
CHEAP = ["--dataset", "synthetic", "--limit", "20", "--preset", "smoke"]


@pytest.fixture(autouse=True)
def bench_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))


def test_grid_dedupes_model_free_runs_and_keeps_grid_order() -> None:
    specs = expand_grid(["popularity", "zero_shot"], ["tiny", "tiny-m"], [0, 1], preset="smoke")
    names = [(spec.algo, spec.model, spec.seed) for spec in specs]
    assert names == [("popularity", "none", 0), ("popularity", "none", 1), ("zero_shot", "tiny", 0),
                     ("zero_shot", "tiny", 1), ("zero_shot", "tiny-m", 0), ("zero_shot", "tiny-m", 1)]
    assert len({spec.run_id for spec in specs}) == len(specs)


def test_grid_rejects_unknown_algorithms_and_empty_grids() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'rank_grpo'"):
        expand_grid(["rank_grp"], ["tiny"], [0])
    with pytest.raises(BenchError, match="empty"):
        expand_grid(["sft"], ["tiny"], [])


def test_waves_put_sft_warm_starts_before_rl_runs() -> None:
    specs = expand_grid(["rank_grpo", "grpo", "zero_shot"], ["tiny"], [0, 1], preset="smoke",
                        preset_overrides={"rl_steps": 5})
    first, second = plan_waves(specs)
    assert [spec.algo for spec in second] == ["rank_grpo", "rank_grpo", "grpo", "grpo"]
    assert [(spec.algo, spec.seed) for spec in first] == [("zero_shot", 0), ("zero_shot", 1), ("sft", 0), ("sft", 1)]
    # grpo and rank_grpo of a seed share one SFT warm start, the one ensure_sft_model would execute.
    assert {sft_dependency(spec).run_id for spec in second} == {spec.run_id for spec in first if spec.algo == "sft"}
    assert sft_dependency(specs[0]).settings.rl_steps == make_spec("sft", "tiny", "smoke").settings.rl_steps


class FailingSftLauncher:
    """Fails every SFT run and records what it was asked to run."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def run(self, specs: Sequence[RunSpec], job: JobFunction) -> Iterator[tuple[RunSpec, JobResult]]:
        for spec in specs:
            self.asked.append(spec.algo)
            yield spec, JobResult.failed(spec.run_id, "boom") if spec.algo == "sft" else JobResult(spec.run_id, "done")


def test_rl_runs_whose_warm_start_failed_are_not_started(tmp_path: Path) -> None:
    launcher = FailingSftLauncher()
    outcome = run_matrix(expand_grid(["grpo"], ["tiny"], [0], preset="smoke"), tmp_path, launcher, echo=lambda _: None)
    assert launcher.asked == ["sft"]
    assert [result.status for result in outcome.results] == ["failed", "failed"]
    (grpo_folder,) = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("grpo")]
    assert "SFT warm start" in (grpo_folder / ERROR_FILE).read_text()


def _matrix(results: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["matrix", *args, *CHEAP, "--results-dir", str(results)])
    return result.exit_code, result.output


def test_failing_run_is_recorded_the_rest_completes_and_a_rerun_resumes(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import baselines.ease

    def broken(ctx: object) -> None:
        raise RuntimeError("ease exploded")

    monkeypatch.setattr(baselines.ease, "predict", broken)
    code, output = _matrix(tmp_path, "--algos", "popularity,ease", "--seeds", "0")
    assert code == 1, output
    runs = {p.name.split("-")[0]: p for p in (tmp_path / "runs").iterdir()}
    assert (runs["popularity"] / "metrics.json").is_file()
    assert not (runs["ease"] / "metrics.json").exists()
    assert "ease exploded" in (runs["ease"] / ERROR_FILE).read_text()
    log = (tmp_path / MATRIX_LOG).read_text()
    assert "FAILED ease" in log and "failed: ease" in log and "1 done, 0 skipped, 1 failed" in log

    monkeypatch.undo()
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    code, output = _matrix(tmp_path, "--algos", "popularity,ease", "--seeds", "0")
    assert code == 0, output
    assert (runs["ease"] / "metrics.json").is_file() and not (runs["ease"] / ERROR_FILE).exists()
    assert "1 done, 1 skipped, 0 failed" in output

    (runs["popularity"] / "metrics.json").unlink()  # an interrupted run: folder there, metrics.json never written
    code, output = _matrix(tmp_path, "--algos", "popularity,ease", "--seeds", "0")
    assert code == 0 and "1 done, 1 skipped, 0 failed" in output
    assert (runs["popularity"] / "metrics.json").is_file()


def test_parallel_local_launcher_runs_in_worker_processes(tmp_path: Path) -> None:
    specs = expand_grid(["popularity"], ["tiny"], [0, 1], ["synthetic"], "smoke", {"eval_limit": 10})
    outcome = run_matrix(specs, tmp_path, LocalLauncher(jobs=2), echo=lambda _: None)
    assert sorted(result.status for result in outcome.results) == ["done", "done"]
    assert all((tmp_path / "runs" / spec.run_id / "metrics.json").is_file() for spec in specs)


def _kill_worker(victim: str, markers: Path | None, spec: RunSpec) -> JobResult:
    """A job whose worker process the OS kills (SIGKILL, as the OOM killer does) when it runs `victim`: every time
    when `markers` is None, else only the first time (a marker file remembers it)."""
    if spec.run_id == victim:
        marker = markers / spec.run_id if markers is not None else None
        if marker is None or not marker.exists():
            if marker is not None:
                marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
    return JobResult(spec.run_id, "done")


def test_a_killed_worker_costs_a_retry_not_the_wave(tmp_path: Path) -> None:
    """Killing one worker breaks the whole pool; the launcher reruns every unfinished run alone, so both finish."""
    specs = expand_grid(["popularity"], ["tiny"], [0, 1], ["synthetic"], "smoke", {"eval_limit": 10})
    messages: list[str] = []
    job = partial(_kill_worker, specs[0].run_id, tmp_path)
    results = dict((spec.run_id, result) for spec, result in LocalLauncher(jobs=2, log=messages.append).run(specs, job))
    assert [results[spec.run_id].status for spec in specs] == ["done", "done"]
    assert (tmp_path / specs[0].run_id).exists()  # it did die once
    assert len(messages) == 1 and "a worker process died" in messages[0]


def test_a_run_whose_worker_dies_again_is_failed_with_the_cause(tmp_path: Path) -> None:
    specs = expand_grid(["popularity"], ["tiny"], [0, 1], ["synthetic"], "smoke", {"eval_limit": 10})
    job = partial(_kill_worker, specs[1].run_id, None)
    results = dict((spec.run_id, result) for spec, result in LocalLauncher(jobs=2, log=lambda _: None).run(specs, job))
    assert results[specs[0].run_id].status == "done"
    assert results[specs[1].run_id].status == "failed" and results[specs[1].run_id].error == WORKER_DIED


def test_slurm_settings_become_submitit_parameters() -> None:
    settings = SlurmSettings(Path("/shared/logs"), partition="gpu", gpus_per_node=2, cpus_per_task=16,
                             timeout_min=90, mem_gb=64.0)
    assert settings.executor_parameters() == {"timeout_min": 90, "gpus_per_node": 2, "cpus_per_task": 16,
                                              "tasks_per_node": 1, "nodes": 1, "mem_gb": 64.0,
                                              "slurm_partition": "gpu"}
    assert "slurm_partition" not in SlurmSettings(Path("x")).executor_parameters()
    with pytest.raises(UnknownNameError):
        make_launcher("kubernetes")


def test_slurm_launcher_without_submitit_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` now raises ImportError
    launcher = make_launcher("slurm", slurm=SlurmSettings(Path("logs")))
    with pytest.raises(BenchError, match=r"pip install 'bench\[cluster\]'"):
        launcher.make_executor()


def test_slurm_launcher_in_submitit_debug_mode(tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    settings = SlurmSettings(tmp_path / "slurm", cluster="debug", timeout_min=5)
    specs = expand_grid(["popularity"], ["tiny"], [0], ["synthetic"], "smoke", {"eval_limit": 10})
    outcome = run_matrix(specs, tmp_path, make_launcher("slurm", slurm=settings), echo=lambda _: None)
    assert [result.status for result in outcome.results] == ["done"]


def test_grid_methods_may_be_named_variants():
    labels = ["grpo", "grpo+mu2", "rank_grpo", "rank_grpo+mrc", "rank_grpo+log_decay", "rank_grpo+mu2"]
    specs = expand_grid(labels, ["tiny"], [0], ["synthetic:smoke"], "smoke", {"rl_steps": 5})
    assert [spec.method_label for spec in specs] == labels
    assert {spec.settings.rl_steps for spec in specs} == {5}
    assert specs[1].settings.mu == 2 and specs[3].missing_rank_credit and specs[4].reward == "log_decay"
    # every variant starts from the one SFT run of these settings
    assert len({sft_dependency(spec).run_id for spec in specs}) == 1


@pytest.mark.parametrize("label", ["grpo+mrc", "rank_grpo+mu0", "rank_grpo+fast", "sft+mu2"])
def test_unknown_variants_are_refused_by_name(label):
    with pytest.raises(BenchError, match=r"\+"):
        expand_grid([label], ["tiny"], [0], preset="smoke")
