"""The algorithm registry: CLI names -> the module that produces predictions for a run.

Each entry's module exposes `predict(ctx: RunContext) -> MethodOutput`; a trained method's module also exposes
`probe(ctx: RunContext) -> dict[str, float]`, its deterministic one-step probe for `bench check`
(`algorithms.probes`). Modules are imported only when chosen.
"""

import importlib
from collections.abc import Callable

from bench.errors import UnknownNameError
from bench.runs.context import MethodOutput, RunContext
from bench.runs.specs import ALGORITHMS, MethodInfo

Probe = Callable[[RunContext], dict[str, float]]


def get_method(name: str) -> tuple[MethodInfo, Callable[[RunContext], MethodOutput]]:
    """The registry entry and its `predict` function (imports the module now)."""
    if name not in ALGORITHMS:
        raise UnknownNameError("algorithm", name, list(ALGORITHMS))
    info = ALGORITHMS[name]
    module = importlib.import_module(info.module)
    return info, module.predict


def get_probe(name: str) -> Probe | None:
    """A trained method's `probe` function (imports the module now); None for untrained methods."""
    info, _ = get_method(name)
    return importlib.import_module(info.module).probe if info.trained else None
