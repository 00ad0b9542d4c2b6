"""Perturbations that make this machine round like another one, for `bench check`.

Another CPU (another vector unit, BLAS path or library build) rounds floats differently; RL amplifies that. A
perturbation reproduces such differences here, so that `bench check --update` can measure how far they move every
number (the bands of `bench.runs.verdicts`) and `bench check --perturb` can show that a check made elsewhere passes:

- `threads=N`: N torch threads instead of the configuration's (parallel reductions split differently);
- `onednn=off`: decoding without oneDNN's packed linear layers, the MKL matmul path instead (`BENCH_ONEDNN=0`);
- `jitter=R[:S]`: every initial weight of a tiny backbone multiplied by (1 + R x a normal draw seeded by S)
  (`BENCH_TINY_JITTER`); 1e-7 is a last-bit difference in float32.

(The two environment switches are documented in `bench.models.numerics`.)

Written as a comma-separated list (`threads=1,onednn=off,jitter=1e-7:3`). A perturbed pass always starts from an
empty cache, as on a fresh machine: cached backbones and rollouts would hide the perturbation.
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.models.numerics import JITTER_VARIABLE, ONEDNN_VARIABLE

SYNTAX = "threads=N, onednn=off, jitter=R[:SEED], comma-separated (e.g. threads=1,onednn=off,jitter=1e-7:3)"


@dataclass(frozen=True)
class Perturbation:
    """Thread count (None: the configuration's), oneDNN decoding on or off, and the initial-weight jitter."""

    threads: int | None = None
    onednn: bool = True
    jitter: float = 0.0
    jitter_seed: int = 0

    @classmethod
    def parse(cls, text: str) -> "Perturbation":
        """From `threads=1,onednn=off,jitter=1e-7:3` (any subset, any order)."""
        threads, onednn, jitter, jitter_seed = None, True, 0.0, 0
        for part in (piece.strip() for piece in text.split(",") if piece.strip()):
            name, _, value = part.partition("=")
            try:
                if name == "threads":
                    threads = int(value)
                    if threads < 1:
                        raise ValueError(value)
                elif name == "onednn" and value in ("on", "off"):
                    onednn = value == "on"
                elif name == "jitter":
                    scale, _, seed = value.partition(":")
                    jitter, jitter_seed = float(scale), int(seed or 0)
                else:
                    raise ValueError(part)
            except ValueError:
                raise BenchError(f"bad perturbation {text!r} (at {part!r}): expected {SYNTAX}") from None
        return cls(threads, onednn, jitter, jitter_seed)

    @property
    def label(self) -> str:
        parts = [] if self.threads is None else [f"threads={self.threads}"]
        parts += [] if self.onednn else ["onednn=off"]
        parts += [f"jitter={self.jitter:g}:{self.jitter_seed}"] if self.jitter else []
        return ",".join(parts) or "none"

    def environment(self) -> dict[str, str]:
        """The environment variables the perturbation sets (`BENCH_ONEDNN`, `BENCH_TINY_JITTER`)."""
        variables = {} if self.onednn else {ONEDNN_VARIABLE: "0"}
        if self.jitter:
            variables[JITTER_VARIABLE] = f"{self.jitter:g}:{self.jitter_seed}"
        return variables


@contextmanager
def perturbed(perturbation: Perturbation, cache: Path | None = None) -> Iterator[Path]:
    """Inside: the perturbation's environment and `BENCH_CACHE` pointing to `cache` (default: a new temporary
    folder, removed on exit); yields that cache. The previous environment is restored on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-check-cache-") as temporary:
        folder = cache or Path(temporary)
        variables = {**perturbation.environment(), "BENCH_CACHE": str(folder)}
        previous = {name: os.environ.get(name) for name in (*variables, ONEDNN_VARIABLE, JITTER_VARIABLE)}
        for name in (ONEDNN_VARIABLE, JITTER_VARIABLE):
            os.environ.pop(name, None)
        os.environ.update(variables)
        try:
            yield folder
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
