"""The endpoint client against bench's own OpenAI-compatible server on 127.0.0.1 serving a tiny backbone, with
injected faults: retries, timeouts, malformed replies, fail-fast errors, the answer cache and a whole run."""

import contextlib
import dataclasses
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baselines.zero_shot import endpoint_predictions
from bench.data.dataset import Dataset
from bench.data.datasets import load_dataset
from bench.errors import BenchError
from bench.models.backbones import Backbone, load_backbone
from bench.models.endpoint import USAGE_FILE, EndpointSettings
from bench.models.openai_server import ServerHandle, serve
from bench.runs.context import RunContext
from bench.runs.folders import RunFolder, read_json, read_jsonl
from bench.runs.runner import execute
from bench.runs.specs import make_spec
from processes import HANG_LIMIT_S

FAST = EndpointSettings(base_delay_s=0.01, max_delay_s=0.05, timeout_s=30.0, connect_timeout_s=2.0)
SMALL = {"max_new_tokens": 8, "eval_limit": 6}


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return load_dataset("redial")


@pytest.fixture(scope="module")
def backbone(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Backbone:
    return load_backbone("tiny", corpus=dataset.corpus(), cache_dir=tmp_path_factory.mktemp("backbones"),
                         device="cpu")


@pytest.fixture(scope="module")
def server(backbone: Backbone) -> Iterator[ServerHandle]:
    with serve(backbone) as handle:
        yield handle


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "BENCH_PRICE_INPUT", "BENCH_PRICE_OUTPUT",
                 "BENCH_ENDPOINT_CONCURRENCY", "BENCH_ENDPOINT_ATTEMPTS", "BENCH_ENDPOINT_RETRY_DELAY",
                 "BENCH_ENDPOINT_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def faults(server: ServerHandle) -> Iterator[ServerHandle]:
    """The server with an empty fault queue, checked to be used up by the test."""
    server.faults.clear()
    yield server
    assert len(server.faults) == 0, "a test left injected faults unused"


def make_context(tmp_path: Path, dataset: Dataset, base_url: str | None, model: str = "openai:tiny") -> RunContext:
    spec = make_spec("zero_shot", model, "smoke", preset_overrides=SMALL, base_url=base_url)
    folder = RunFolder(tmp_path / "run")
    folder.root.mkdir(parents=True, exist_ok=True)
    return RunContext(spec, dataset, folder, tmp_path / "cache", tmp_path / "results", log=lambda _: None,
                      progress=False)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_one_request_per_prompt_usage_recorded_and_a_rerun_sends_nothing(
        faults: ServerHandle, dataset: Dataset, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, dataset, faults.url)
    examples = ctx.eval_examples()
    twin = dataclasses.replace(examples[0], id="twin-of-first")
    before = faults.chat_requests
    output = endpoint_predictions(ctx, [*examples, twin], FAST)
    assert set(output.predictions) == {example.id for example in examples} | {twin.id}
    assert output.predictions[twin.id] == output.predictions[examples[0].id]
    assert faults.chat_requests - before == len(examples)
    usage = output.artifacts["endpoint"]
    assert (usage["prompts"], usage["cached_prompts"], usage["requests"], usage["retries"]) == (6, 0, 6, 0)
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 6 * SMALL["max_new_tokens"]
    assert usage["replies_without_usage"] == 0 and usage["cost_usd"] is None and usage["finished"]
    assert read_json(ctx.folder.root / USAGE_FILE) == usage

    again = endpoint_predictions(ctx, [*examples, twin], FAST)
    assert faults.chat_requests - before == len(examples)
    assert again.predictions == output.predictions
    assert (again.artifacts["endpoint"]["cached_prompts"], again.artifacts["endpoint"]["requests"]) == (6, 0)


def test_rate_limits_server_errors_and_dropped_connections_are_retried(
        faults: ServerHandle, dataset: Dataset, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, dataset, faults.url)
    faults.faults.add("429", "500", "503", "drop")
    before = faults.chat_requests
    output = endpoint_predictions(ctx, ctx.eval_examples(), FAST)
    usage = output.artifacts["endpoint"]
    assert len(output.predictions) == 6
    assert (usage["requests"], usage["retries"], usage["failed_prompts"]) == (10, 4, 0)
    assert faults.chat_requests - before == 10


def test_a_reply_slower_than_the_timeout_is_retried(faults: ServerHandle, dataset: Dataset, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The server holds the first request ("stall") until the test releases it; the client's read timeout fires
    for it, injected rather than waited for: once the server holds the request, the transport raises what httpx2
    raises when the read timeout passes (`ReadTimeout`). The client must count it, retry, and finish; the held
    request is let go only afterwards. Nothing depends on how fast this machine answers."""
    import httpx2

    ctx = make_context(tmp_path, dataset, faults.url)
    faults.faults.add("stall")
    settings = dataclasses.replace(FAST, timeout_s=2.0, concurrency=1)
    send = httpx2.HTTPTransport.handle_request
    held: list[threading.Thread] = []
    read_timeouts: list[float] = []

    def handle_request(transport: Any, request: Any) -> Any:
        read_timeouts.append(request.extensions["timeout"]["read"])
        if held or not request.url.path.endswith("/chat/completions"):
            return send(transport, request)
        def send_and_discard() -> None:
            with contextlib.suppress(Exception):  # the client has given up on this request by the time it ends
                send(transport, request)

        held.append(threading.Thread(target=send_and_discard))
        held[0].start()
        assert faults.faults.stalled.wait(HANG_LIMIT_S), "the server never held the request"
        raise httpx2.ReadTimeout("injected: no reply within the read timeout", request=request)

    monkeypatch.setattr(httpx2.HTTPTransport, "handle_request", handle_request)
    before = faults.chat_requests
    output = endpoint_predictions(ctx, ctx.eval_examples()[:2], settings)
    faults.faults.release()
    held[0].join(HANG_LIMIT_S)
    usage = output.artifacts["endpoint"]
    assert len(output.predictions) == 2
    assert (usage["requests"], usage["retries"], usage["failed_prompts"]) == (3, 1, 0)
    assert faults.chat_requests - before == 3  # the held request reached the server
    assert set(read_timeouts) == {2.0}  # the configured timeout is the one the transport enforces


def test_malformed_replies_are_retried_then_recorded_as_empty_answers(
        faults: ServerHandle, dataset: Dataset, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, dataset, faults.url)
    examples = ctx.eval_examples()
    faults.faults.add("malformed", "empty_choices")
    recovered = endpoint_predictions(ctx, examples[:2], FAST).artifacts["endpoint"]
    assert (recovered["malformed_replies"], recovered["retries"], recovered["failed_prompts"]) == (2, 2, 0)

    faults.faults.add("malformed", "malformed")
    output = endpoint_predictions(ctx, examples[2:3], dataclasses.replace(FAST, max_attempts=2))
    usage = output.artifacts["endpoint"]
    assert output.predictions == {examples[2].id: ""}
    assert (usage["malformed_replies"], usage["failed_prompts"], usage["finished"]) == (2, 1, True)
    retried = endpoint_predictions(ctx, examples[2:3], FAST).artifacts["endpoint"]
    assert (retried["cached_prompts"], retried["requests"]) == (0, 1), "an empty answer from failures is not cached"


def test_a_corrupted_cache_entry_is_asked_again(faults: ServerHandle, dataset: Dataset, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, dataset, faults.url)
    examples = ctx.eval_examples()[:3]
    first = endpoint_predictions(ctx, examples, FAST)
    entries = sorted((ctx.cache_dir / "endpoint").rglob("*.json"))
    assert len(entries) == 3
    entries[0].write_text('{"key": "trunc')
    before = faults.chat_requests
    second = endpoint_predictions(ctx, examples, FAST)
    assert faults.chat_requests - before == 1
    assert second.predictions == first.predictions
    assert second.artifacts["endpoint"]["cached_prompts"] == 2


def test_giving_up_stops_the_run_with_one_line_and_a_rerun_resumes(
        faults: ServerHandle, dataset: Dataset, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, dataset, faults.url)
    examples = ctx.eval_examples()[:1]
    faults.faults.add("500", "500", "500")
    with pytest.raises(BenchError, match="after 3 attempts") as error:
        endpoint_predictions(ctx, examples, dataclasses.replace(FAST, max_attempts=3))
    assert "\n" not in str(error.value)
    usage = read_json(ctx.folder.root / USAGE_FILE)
    assert (usage["finished"], usage["requests"], usage["retries"]) == (False, 3, 2)
    assert len(endpoint_predictions(ctx, examples, FAST).predictions) == 1


@pytest.mark.parametrize(("fault", "model", "message"), [
    ("401", "openai:tiny", "refused the API key"),
    ("403", "openai:tiny", "refused the API key"),
    (None, "openai:no-such-model", "Model 'no-such-model' not found"),
    ("400", "openai:tiny", "rejected the request"),
])
def test_auth_unknown_model_and_bad_requests_fail_fast_without_retries(
        faults: ServerHandle, dataset: Dataset, tmp_path: Path, fault: str | None, model: str, message: str) -> None:
    ctx = make_context(tmp_path, dataset, faults.url, model=model)
    if fault is not None:
        faults.faults.add(fault)
    before = faults.chat_requests
    with pytest.raises(BenchError, match=message) as error:
        endpoint_predictions(ctx, ctx.eval_examples()[:1], FAST)
    assert "\n" not in str(error.value)
    assert faults.chat_requests - before == 1


def test_an_unreachable_server_fails_fast_with_one_line(dataset: Dataset, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    ctx = make_context(tmp_path, dataset, url)
    with pytest.raises(BenchError, match="Cannot connect") as error:
        endpoint_predictions(ctx, ctx.eval_examples(), EndpointSettings())
    assert url in str(error.value) and "\n" not in str(error.value)
    usage = read_json(ctx.folder.root / USAGE_FILE)
    # fast: no prompt is retried (no backoff waits), whatever the timing; how many prompts the workers had taken
    # before the first failure stopped them depends on thread scheduling, so it is not asserted
    assert (usage["finished"], usage["retries"]) == (False, 0) and usage["requests"] >= 1


def test_the_official_api_without_a_key_fails_before_any_request(dataset: Dataset, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, dataset, None, model="openai:gpt-4o-mini")
    with pytest.raises(BenchError, match="OPENAI_API_KEY is not set") as error:
        endpoint_predictions(ctx, ctx.eval_examples(), FAST)
    assert "\n" not in str(error.value)


def test_a_zero_shot_run_through_the_endpoint_writes_a_complete_run_folder(
        faults: ServerHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BENCH_ENDPOINT_RETRY_DELAY", "0.01")
    faults.faults.add("429")
    spec = make_spec("zero_shot", "openai:tiny", "smoke", preset_overrides={**SMALL, "eval_limit": 4},
                     base_url=faults.url)
    outcome = execute(spec, tmp_path / "results", cache_dir=tmp_path / "cache", log=lambda _: None, progress=False)
    folder = RunFolder(outcome.folder)
    assert folder.is_complete() and not outcome.skipped
    for path in (folder.spec_path, folder.environment_path, folder.summary_path, folder.root / USAGE_FILE):
        assert path.is_file(), path
    assert read_json(folder.spec_path)["base_url"] == faults.url
    assert len(read_jsonl(folder.examples_path)) == 4
    usage = read_json(folder.summary_path)["artifacts"]["endpoint"]
    assert (usage["requests"], usage["retries"], usage["model"]) == (5, 1, "tiny")
    assert json.loads((folder.root / USAGE_FILE).read_text()) == usage
    assert execute(spec, tmp_path / "results", cache_dir=tmp_path / "cache", log=lambda _: None,
                   progress=False).skipped
