"""Child process of tests/integration/test_run_lock.py: executes the popularity smoke run into RESULTS_DIR.

The test's own slow step: with BENCH_TEST_SLOW_SECONDS set, popularity's predict first sleeps that long (so two
processes overlap), and with BENCH_TEST_STARTED set it first touches that file (so the test knows the run began).
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
    time.sleep(float(os.environ.get("BENCH_TEST_SLOW_SECONDS", "0")))
    return real_predict(ctx)


baselines.popularity.predict = slow_predict
outcome = execute(make_spec("popularity", "none", "smoke"), Path(sys.argv[1]), log=lambda line: print(line, flush=True))
print(json.dumps({"skipped": outcome.skipped, "run_id": outcome.run_id}), flush=True)
