"""Two real processes and one run folder (issue 10): the second waits on the folder's OS lock, says so, and reuses
the run the first completed; a lock whose holder was killed does not block the next process.

The children (`lock_child.py`) execute the popularity smoke run with a step injected by the test's own child script
that holds the run until the test releases it, so the processes overlap until the second says it waits.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from processes import HANG_LIMIT_S, ChildOutput, wait_for_file

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("lock_child.py")


def _start(results: Path, tmp_path: Path, name: str, release: Path | None = None) -> tuple[subprocess.Popen, Path]:
    """A child running the popularity run; inside predict it touches `<name>.started` and, given `release`, holds the
    run (and its lock) until that file exists."""
    started = tmp_path / f"{name}.started"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_CACHE": str(tmp_path / "cache"),
           "BENCH_TEST_STARTED": str(started), **({"BENCH_TEST_RELEASE": str(release)} if release else {})}
    process = subprocess.Popen([sys.executable, str(CHILD), str(results)], env=env, cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return process, started


def _finish(process: subprocess.Popen, child: ChildOutput | None = None) -> tuple[dict, str]:
    output = (child or ChildOutput(process)).finish()
    assert process.returncode == 0, output
    return json.loads(output.strip().splitlines()[-1]), output


def test_second_process_waits_then_reuses_the_finished_run(tmp_path: Path) -> None:
    results = tmp_path / "results"
    release = tmp_path / "release"
    first, first_started = _start(results, tmp_path, "first", release)
    wait_for_file(first_started, first)  # the first process holds the lock and is inside predict
    second, second_started = _start(results, tmp_path, "second")
    second_output = ChildOutput(second)
    second_output.wait_for("waiting for")  # the second met the held lock
    release.touch()
    first_result, _ = _finish(first)
    second_result, second_text = _finish(second, second_output)
    assert first_result["skipped"] is False
    assert second_result == {"skipped": True, "run_id": first_result["run_id"]}
    assert "completed by another process" in second_text
    assert not second_started.exists()  # the second never predicted
    folder = results / "runs" / first_result["run_id"]
    assert json.loads((folder / "metrics.json").read_text())["n_examples"] == 24


def test_a_killed_holder_does_not_block(tmp_path: Path) -> None:
    results = tmp_path / "results"
    holder, holder_started = _start(results, tmp_path, "holder", tmp_path / "never-released")
    wait_for_file(holder_started, holder)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=HANG_LIMIT_S)
    folder = next((results / "runs").iterdir())
    assert (folder / ".lock").exists() and not (folder / "metrics.json").exists()
    nxt, _ = _start(results, tmp_path, "next")
    result, output = _finish(nxt)
    assert result["skipped"] is False and "waiting for" not in output  # it took the lock at once
    assert (folder / "metrics.json").is_file()
