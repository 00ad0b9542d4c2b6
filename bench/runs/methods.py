"""The algorithm registry: CLI names -> the module that produces predictions for a run.

Each entry's module exposes `predict(ctx: RunContext) -> MethodOutput`; a trained method also names its
deterministic one-step probe for `bench check` (`MethodInfo.probe`, in `experiments.probes`), a function
`(ctx: RunContext) -> dict[str, float]`. Modules are imported only when chosen.
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
    """A method's probe function (imports its module now); None for a method without one (the untrained)."""
    if name not in ALGORITHMS:
        raise UnknownNameError("algorithm", name, list(ALGORITHMS))
    probe = ALGORITHMS[name].probe
    if probe is None:
        return None
    module, _, function = probe.partition(":")
    return getattr(importlib.import_module(module), function)
