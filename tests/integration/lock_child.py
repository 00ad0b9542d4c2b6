"""Child process of tests/integration/test_run_lock.py: executes the popularity smoke run into RESULTS_DIR.

The test's own slow step: with BENCH_TEST_STARTED set, popularity's predict first touches that file (so the test
knows the run began), and with BENCH_TEST_RELEASE set it then waits until that file exists (so two processes overlap
for as long as the test needs, however slowly the machine starts the other one).
Prints one JSON line: {"skipped": ..., "run_id": ...}.
"""

import json
import os
import sys
import time
from pathlib import Path

import baselines.popularity
from bench.runs.runner import execute
from bench.runs.specs import make_spec

real_predict = baselines.popularity.predict


def slow_predict(ctx):
    if os.environ.get("BENCH_TEST_STARTED"):
        Path(os.environ["BENCH_TEST_STARTED"]).touch()
    release = os.environ.get("BENCH_TEST_RELEASE")
    while release and not Path(release).exists():
        time.sleep(0.05)
    return real_predict(ctx)


baselines.popularity.predict = slow_predict
outcome = execute(make_spec("popularity", "none", "smoke"), Path(sys.argv[1]), log=lambda line: print(line, flush=True))
print(json.dumps({"skipped": outcome.skipped, "run_id": outcome.run_id}), flush=True)
