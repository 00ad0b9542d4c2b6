"""The endpoint client's pure parts: cache keys, endpoint and key resolution, prices, settings, reply checks."""

import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.errors import BenchError
from bench.models.endpoint import (
    ENDPOINT_PRODUCER,
    OFFICIAL_BASE_URL,
    Endpoint,
    EndpointSettings,
    MalformedReply,
    RequestSettings,
    Usage,
    _reply_text,
    price_per_1m,
    resolve_endpoint,
)
from bench.models.rollout_cache import RolloutCache

PROMPT = ({"role": "user", "content": "I liked Alien (1979)."},)
LOCAL = Endpoint("http://127.0.0.1:8000/v1", "tiny", "EMPTY")


def test_cache_entries_are_separated_by_url_model_settings_and_seed(tmp_path: Path) -> None:
    cache = RolloutCache(tmp_path)
    settings = RequestSettings(max_tokens=48)
    cache.put(LOCAL.fingerprint, ENDPOINT_PRODUCER, PROMPT, settings, 0, ["Heat (1995)"])
    assert cache.get(LOCAL.fingerprint, ENDPOINT_PRODUCER, PROMPT, settings, 0) == ["Heat (1995)"]
    other_url = Endpoint("http://127.0.0.1:9000/v1", "tiny", "EMPTY")
    other_model = Endpoint(LOCAL.base_url, "tiny-m", "EMPTY")
    assert cache.get(other_url.fingerprint, ENDPOINT_PRODUCER, PROMPT, settings, 0) is None
    assert cache.get(other_model.fingerprint, ENDPOINT_PRODUCER, PROMPT, settings, 0) is None
    assert cache.get(LOCAL.fingerprint, ENDPOINT_PRODUCER, PROMPT, RequestSettings(max_tokens=49), 0) is None
    assert cache.get(LOCAL.fingerprint, ENDPOINT_PRODUCER, PROMPT, RequestSettings(max_tokens=48, temperature=1.0),
                     0) is None
    assert cache.get(LOCAL.fingerprint, ENDPOINT_PRODUCER, PROMPT, settings, 1) is None
    assert cache.get(LOCAL.fingerprint, ENDPOINT_PRODUCER, (*PROMPT, {"role": "user", "content": "more"}), settings, 0) is None


def test_the_key_never_reaches_the_cache_key() -> None:
    assert LOCAL.fingerprint == Endpoint(LOCAL.base_url, "tiny", "sk-secret").fingerprint
    assert "sk-secret" not in repr(Endpoint(LOCAL.base_url, "tiny", "sk-secret"))


def test_a_corrupt_entry_is_a_miss_and_is_deleted(tmp_path: Path) -> None:
    cache = RolloutCache(tmp_path)
    settings = RequestSettings(max_tokens=48)
    cache.put(LOCAL.fingerprint, ENDPOINT_PRODUCER, PROMPT, settings, 0, ["Heat (1995)"])
    [entry] = tmp_path.rglob("*.json")
    entry.write_text(entry.read_text()[:-20])
    assert cache.get(LOCAL.fingerprint, ENDPOINT_PRODUCER, PROMPT, settings, 0) is None
    assert cache.dropped == 1 and not entry.exists()


def test_official_api_without_key_is_a_one_line_error() -> None:
    with pytest.raises(BenchError, match="OPENAI_API_KEY") as error:
        resolve_endpoint("openai:gpt-4o-mini", None, environ={})
    assert "\n" not in str(error.value)


def test_endpoint_resolution_order_and_keys() -> None:
    official = resolve_endpoint("openai:gpt-4o", None, {"OPENAI_API_KEY": "k"})
    assert official == Endpoint(OFFICIAL_BASE_URL, "gpt-4o", "k")
    local = resolve_endpoint("openai:tiny", "http://127.0.0.1:8000/v1/", {})
    assert (local.base_url, local.model, local.api_key) == ("http://127.0.0.1:8000/v1", "tiny", "EMPTY")
    from_env = resolve_endpoint("openai:tiny", None, {"OPENAI_BASE_URL": "http://h:1/v1", "OPENAI_API_KEY": "k"})
    assert (from_env.base_url, from_env.api_key) == ("http://h:1/v1", "k")
    assert resolve_endpoint("openai:tiny", "http://a/v1", {"OPENAI_BASE_URL": "http://b/v1"}).base_url == "http://a/v1"
    with pytest.raises(BenchError, match="openai:<model>"):
        resolve_endpoint("openai:", "http://a/v1", {})


def test_prices_table_override_and_unknown_models() -> None:
    assert price_per_1m("gpt-4o-mini", environ={}) == (0.15, 0.60)
    assert price_per_1m("tiny", environ={}) is None
    assert price_per_1m("tiny", {"BENCH_PRICE_INPUT": "1", "BENCH_PRICE_OUTPUT": "2.5"}) == (1.0, 2.5)
    with pytest.raises(BenchError, match="both"):
        price_per_1m("gpt-4o", {"BENCH_PRICE_INPUT": "1"})
    with pytest.raises(BenchError, match="BENCH_PRICE_OUTPUT"):
        price_per_1m("gpt-4o", {"BENCH_PRICE_INPUT": "1", "BENCH_PRICE_OUTPUT": "cheap"})


def test_usage_cost_is_per_million_tokens_and_null_when_unknown() -> None:
    usage = Usage(prompt_tokens=2_000_000, completion_tokens=500_000)
    assert usage.to_json(LOCAL, (0.15, 0.60), True)["cost_usd"] == pytest.approx(0.6)
    record = usage.to_json(LOCAL, None, False)
    assert record["cost_usd"] is None and record["price_per_1m_tokens"] is None and record["finished"] is False
    assert "api_key" not in record and "EMPTY" not in str(record)


def test_settings_from_environment_and_validation() -> None:
    assert EndpointSettings.from_env({}) == EndpointSettings()
    settings = EndpointSettings.from_env({"BENCH_ENDPOINT_CONCURRENCY": "3", "BENCH_ENDPOINT_ATTEMPTS": "2",
                                          "BENCH_ENDPOINT_RETRY_DELAY": "0.5", "BENCH_ENDPOINT_TIMEOUT": "9"})
    assert (settings.concurrency, settings.max_attempts, settings.base_delay_s, settings.timeout_s) == (3, 2, 0.5, 9.0)
    with pytest.raises(BenchError, match="BENCH_ENDPOINT_CONCURRENCY"):
        EndpointSettings.from_env({"BENCH_ENDPOINT_CONCURRENCY": "many"})
    with pytest.raises(BenchError):
        EndpointSettings(concurrency=0)
    with pytest.raises(BenchError):
        EndpointSettings(timeout_s=0)


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap() -> None:
    settings = EndpointSettings(base_delay_s=1.0, max_delay_s=5.0)
    rng = random.Random(0)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)):
        delays = [settings.backoff_s(attempt, rng) for _ in range(200)]
        assert 0.0 <= min(delays) and max(delays) <= ceiling
        assert max(delays) > 0.8 * ceiling


def _reply(choices: object, usage: object = None) -> SimpleNamespace:
    return SimpleNamespace(choices=choices, usage=usage)


def test_reply_text_and_usage_are_checked_not_trusted() -> None:
    message = SimpleNamespace(message=SimpleNamespace(content="Heat (1995)"))
    usage = SimpleNamespace(prompt_tokens=10, completion_tokens=4)
    assert _reply_text(_reply([message], usage)) == ("Heat (1995)", (10, 4))
    assert _reply_text(_reply([message], SimpleNamespace(prompt_tokens=None))) == ("Heat (1995)", None)
    for broken in ("not a completion", _reply([]), _reply(None), _reply([SimpleNamespace(message=None)]),
                   _reply([SimpleNamespace(message=SimpleNamespace(content=None))])):
        with pytest.raises(MalformedReply):
            _reply_text(broken)
