"""The algorithm registry: CLI names -> the module that produces predictions for a run.

Each entry's module exposes `predict(ctx: RunContext) -> MethodOutput`; modules are imported only when chosen.
"""

import importlib
from collections.abc import Callable

from bench.errors import UnknownNameError
from bench.runs.context import MethodOutput, RunContext
from bench.runs.specs import ALGORITHMS, MethodInfo


def get_method(name: str) -> tuple[MethodInfo, Callable[[RunContext], MethodOutput]]:
    """The registry entry and its `predict` function (imports the module now)."""
    if name not in ALGORITHMS:
        raise UnknownNameError("algorithm", name, list(ALGORITHMS))
    info = ALGORITHMS[name]
    module = importlib.import_module(info.module)
    return info, module.predict
