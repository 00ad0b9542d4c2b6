"""Two real processes and one run folder (issue 10): the second waits on the folder's OS lock, says so, and reuses
the run the first completed; a lock whose holder was killed does not block the next process.

The children (`lock_child.py`) execute the popularity smoke run with a slow step injected by the test's own child
script, so the processes overlap for seconds.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("lock_child.py")


def _start(results: Path, tmp_path: Path, name: str, slow: float) -> tuple[subprocess.Popen, Path]:
    started = tmp_path / f"{name}.started"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_CACHE": str(tmp_path / "cache"),
           "BENCH_TEST_SLOW_SECONDS": str(slow), "BENCH_TEST_STARTED": str(started)}
    process = subprocess.Popen([sys.executable, str(CHILD), str(results)], env=env, cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return process, started


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.1)


def _finish(process: subprocess.Popen) -> tuple[dict, str]:
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output
    return json.loads(output.strip().splitlines()[-1]), output


def test_second_process_waits_then_reuses_the_finished_run(tmp_path: Path) -> None:
    results = tmp_path / "results"
    first, first_started = _start(results, tmp_path, "first", slow=6.0)
    _wait_for(first_started, first)  # the first process holds the lock and is inside predict
    second, second_started = _start(results, tmp_path, "second", slow=0.0)
    first_result, _ = _finish(first)
    second_result, second_output = _finish(second)
    assert first_result["skipped"] is False
    assert second_result == {"skipped": True, "run_id": first_result["run_id"]}
    assert "waiting for" in second_output and "completed by another process" in second_output
    assert not second_started.exists()  # the second never predicted
    folder = results / "runs" / first_result["run_id"]
    assert json.loads((folder / "metrics.json").read_text())["n_examples"] == 24


def test_a_killed_holder_does_not_block(tmp_path: Path) -> None:
    results = tmp_path / "results"
    holder, holder_started = _start(results, tmp_path, "holder", slow=600.0)
    _wait_for(holder_started, holder)
    os.kill(holder.pid, signal.SIGKILL)
    holder.communicate(timeout=30)
    folder = next((results / "runs").iterdir())
    assert (folder / ".lock").exists() and not (folder / "metrics.json").exists()
    start = time.monotonic()
    nxt, _ = _start(results, tmp_path, "next", slow=0.0)
    result, output = _finish(nxt)
    assert result["skipped"] is False and "waiting for" not in output
    assert time.monotonic() - start < 120
    assert (folder / "metrics.json").is_file()
