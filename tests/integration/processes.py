"""Waiting on child processes in tests by what they say, not by the clock: a busy machine (CI, other jobs) can make
a child take minutes to import torch and start, and that must not fail a test. The limit only guards against a
child that hangs; a child that dies fails the test at once, with its output."""

import subprocess
import threading
import time
from pathlib import Path

HANG_LIMIT_S = 900.0
"""How long a child may take before the test calls it hung (far beyond any busy machine's start)."""


class ChildOutput:
    """Everything a child writes to its stdout pipe, read as it comes by a thread, so that a test can wait for a line
    (readiness) and still have the whole output when the child ends."""

    def __init__(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        self.process = process
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in iter(self.process.stdout.readline, ""):  # type: ignore[union-attr]
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, marker: str, limit: float = HANG_LIMIT_S) -> str:
        """The first line containing `marker`; fails when the child's output ends first or it hangs."""
        deadline = time.monotonic() + limit
        with self.changed:
            while True:
                found = next((line for line in self.lines if marker in line), None)
                if found is not None:
                    return found
                assert self.reader.is_alive(), f"ended without {marker!r}: {self.text}"
                assert time.monotonic() < deadline, f"no {marker!r} within {limit:.0f} s: {self.text}"
                self.changed.wait(timeout=0.5)

    def finish(self, limit: float = HANG_LIMIT_S) -> str:
        """Wait for the child to exit; its whole output."""
        self.process.wait(timeout=limit)
        self.reader.join(timeout=limit)
        return self.text


def wait_for_file(path: Path, process: subprocess.Popen, limit: float = HANG_LIMIT_S) -> None:
    """Until `path` exists; fails when the child exits first or hangs."""
    deadline = time.monotonic() + limit
    while not path.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"{path.name} never appeared in {limit:.0f} s"
        time.sleep(0.1)
