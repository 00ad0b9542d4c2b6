"""Environment switches that change this machine's float paths, read where the models decide.

Another machine rounds differently (another vector unit, BLAS path or library build); these switches make this one
round differently on purpose, so that `bench check` can measure how far that moves its numbers
(`bench.runs.perturb`). Both are off unless set:

- `BENCH_ONEDNN=0` (or false/no/off): decoding keeps plain `nn.Linear` layers (MKL matmuls) instead of oneDNN's
  packed ones (`bench.models.cpu_decoding`); also a way out should a oneDNN build misbehave.
- `BENCH_TINY_JITTER=RELATIVE[:SEED]` (e.g. `1e-7` or `1e-7:3`): every initial weight of a tiny backbone is
  multiplied by (1 + RELATIVE x a standard normal draw from a generator seeded by SEED, default 0)
  (`bench.models.tiny`); 1e-7 is a last-bit difference in float32. The jitter is part of the build's cache key, so a
  jittered build never replaces the plain one.

Kept free of heavy imports, so that reading a switch never loads torch.
"""

import os

from bench.errors import BenchError

ONEDNN_VARIABLE = "BENCH_ONEDNN"
JITTER_VARIABLE = "BENCH_TINY_JITTER"


def onednn_disabled() -> bool:
    """Whether `BENCH_ONEDNN` turns oneDNN decoding off."""
    return os.environ.get(ONEDNN_VARIABLE, "").strip().lower() in ("0", "false", "no", "off")


def weight_jitter() -> tuple[float, int] | None:
    """(relative scale, seed) from `BENCH_TINY_JITTER`, or None when unset or 0."""
    raw = os.environ.get(JITTER_VARIABLE, "").strip()
    if not raw:
        return None
    scale, _, seed = raw.partition(":")
    try:
        parsed = (float(scale), int(seed or 0))
    except ValueError:
        raise BenchError(f"{JITTER_VARIABLE}={raw!r}: expected RELATIVE[:SEED], e.g. 1e-7 or 1e-7:3") from None
    return parsed if parsed[0] != 0.0 else None
