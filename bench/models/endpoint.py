"""An OpenAI-compatible chat-completions endpoint as a model (models named `openai:<model>`): zero-shot
(`baselines.zero_shot`) and the multi-step LLM pipelines (`bench.models.llm_client`) ask it through here.

One answer per distinct prompt, asked through the `openai` client with the request's settings (temperature 0 and
`max_tokens` for the methods: greedy) and `seed` = the run seed (servers that ignore seeds still answer). Prompts are
sent whole: a remote model has a long context and no local tokenizer to trim with.

Where: the spec's `base_url`, else $OPENAI_BASE_URL, else the official OpenAI API. Key: $OPENAI_API_KEY; a named
base URL without a key gets "EMPTY" (local servers accept any key), the official API without one is an error.

Robustness, because remote calls cost money and fail in many ways:
- answers are stored as they arrive in the shared rollout cache under `<cache_dir>/endpoint` (atomic writes, corrupt
  entries dropped), keyed by (base URL, model, messages, sampling settings, seed): an interrupted or rate-limited
  run resumes without paying twice, and a rerun sends no request for answered prompts;
- at most `concurrency` requests in flight; 429, 408, 409, 5xx, timeouts and dropped connections are retried with
  exponential backoff and full jitter, up to `max_attempts` per prompt; giving up stops the run with one line (the
  answers so far stay cached), rather than scoring a run full of holes;
- one clear line (BenchError), at once, for what retrying cannot fix: no key for the official API, a server that
  cannot be connected to before any reply (refused, unknown host, connect timeout), a rejected key (401/403), an
  unknown model (404) or a rejected request (other 4xx);
- a malformed reply (not JSON, no choices, no text) is retried like a transient error; when the attempts run out
  on a malformed reply the prompt gets an empty answer, counted in `failed_prompts` and not cached.

Usage (requests, retries, failures, tokens from each reply's `usage`, estimated cost) is counted per client
(`Usage`); the methods write it to their artifacts and to `usage.json` (`USAGE_FILE`) in the run folder, also when
the run stops on an error.
"""

import json
import os
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.errors import BenchError
from bench.models.rollout_cache import RolloutCache

ENDPOINT_PREFIX = "openai:"
OFFICIAL_BASE_URL = "https://api.openai.com/v1"
USAGE_FILE = "usage.json"
ENDPOINT_PRODUCER = "endpoint"
"""The rollout cache's producer of endpoint answers: the endpoint's fingerprint (URL and model) already names it."""

PRICES_PER_1M_TOKENS: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-3.5-turbo": (0.50, 1.50),
}
"""USD per 1M (input, output) tokens of the official API, as published at the time of writing (standard tier, no
cached-input discount). Exact model names only; override with $BENCH_PRICE_INPUT and $BENCH_PRICE_OUTPUT."""

RETRYABLE_STATUS = frozenset({408, 409, 429})
"""Statuses worth retrying besides 5xx (the same set the openai client retries)."""

Chat = Sequence[Mapping[str, str]]


@dataclass(frozen=True)
class EndpointSettings:
    """How requests are sent: concurrency, attempts per prompt, backoff and timeouts (seconds).

    The backoff before attempt k+1 is uniform in [0, min(max_delay_s, base_delay_s * 2**(k-1))] ("full jitter").
    `connect_timeout_s` is short so that an unreachable host fails fast; `timeout_s` bounds each whole request.
    """

    concurrency: int = 8
    max_attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    timeout_s: float = 120.0
    connect_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_attempts < 1:
            raise BenchError(f"Endpoint concurrency and attempts must be at least 1, got {self.concurrency} and "
                             f"{self.max_attempts}.")
        if min(self.base_delay_s, self.max_delay_s) < 0 or min(self.timeout_s, self.connect_timeout_s) <= 0:
            raise BenchError("Endpoint delays must be >= 0 and timeouts > 0.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "EndpointSettings":
        """Defaults, overridden by $BENCH_ENDPOINT_CONCURRENCY, $BENCH_ENDPOINT_ATTEMPTS,
        $BENCH_ENDPOINT_RETRY_DELAY (base delay), $BENCH_ENDPOINT_TIMEOUT."""
        overrides: dict[str, Any] = {}
        for variable, name, kind in (("BENCH_ENDPOINT_CONCURRENCY", "concurrency", int),
                                     ("BENCH_ENDPOINT_ATTEMPTS", "max_attempts", int),
                                     ("BENCH_ENDPOINT_RETRY_DELAY", "base_delay_s", float),
                                     ("BENCH_ENDPOINT_TIMEOUT", "timeout_s", float)):
            if environ.get(variable):
                overrides[name] = _parse_number(variable, environ[variable], kind)
        return cls(**overrides)

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return rng.uniform(0.0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class RequestSettings:
    """What a request asks for besides the messages and seed; part of the cache key."""

    max_tokens: int
    temperature: float = 0.0

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: the resolved base URL, the model id the server knows, and the key (never written out)."""

    base_url: str
    model: str
    api_key: str = field(repr=False)

    @property
    def fingerprint(self) -> str:
        """The cache's backbone identity for this endpoint: the same model at another URL is another model."""
        return json.dumps({"base_url": self.base_url, "model": self.model}, sort_keys=True)


def resolve_endpoint(model: str, base_url: str | None, environ: Mapping[str, str] = os.environ) -> Endpoint:
    """The endpoint for a spec's model (`openai:` prefix optional) and base URL, with the key from the environment.
    A BenchError when the official API would be used without $OPENAI_API_KEY."""
    name = model.removeprefix(ENDPOINT_PREFIX)
    if not name:
        raise BenchError(f"Model '{model}' names no endpoint model; use openai:<model>, e.g. openai:gpt-4o-mini.")
    url = base_url or environ.get("OPENAI_BASE_URL") or None
    key = environ.get("OPENAI_API_KEY") or None
    if url is None and key is None:
        raise BenchError(f"OPENAI_API_KEY is not set: it is needed for the official OpenAI API (model '{name}'); "
                         f"set it, or pass --base-url for an OpenAI-compatible server.")
    return Endpoint((url or OFFICIAL_BASE_URL).rstrip("/"), name, key or "EMPTY")


def price_per_1m(model: str, environ: Mapping[str, str] = os.environ) -> tuple[float, float] | None:
    """USD per 1M (input, output) tokens: $BENCH_PRICE_INPUT/$BENCH_PRICE_OUTPUT when set (both needed), else the
    table's price for the exact model name, else None (unknown)."""
    given = [environ.get(name) for name in ("BENCH_PRICE_INPUT", "BENCH_PRICE_OUTPUT")]
    if any(given):
        if not all(given):
            raise BenchError("Set both BENCH_PRICE_INPUT and BENCH_PRICE_OUTPUT (USD per 1M tokens), or neither.")
        return (_parse_number("BENCH_PRICE_INPUT", given[0] or "", float),
                _parse_number("BENCH_PRICE_OUTPUT", given[1] or "", float))
    return PRICES_PER_1M_TOKENS.get(model)


def _parse_number(variable: str, text: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise BenchError(f"${variable} must be a number, got {text!r}.") from None


@dataclass
class Usage:
    """Counts over one endpoint run. `requests` counts HTTP requests sent (retries included)."""

    prompts: int = 0
    cached_prompts: int = 0
    requests: int = 0
    retries: int = 0
    malformed_replies: int = 0
    failed_prompts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    replies_without_usage: int = 0

    def to_json(self, endpoint: Endpoint, price: tuple[float, float] | None, finished: bool) -> dict[str, Any]:
        """The counts plus where they came from and the estimated cost in USD (None when the price is unknown)."""
        cost = None
        if price is not None:
            cost = (self.prompt_tokens * price[0] + self.completion_tokens * price[1]) / 1e6
        return {"base_url": endpoint.base_url, "model": endpoint.model, "finished": finished, **asdict(self),
                "price_per_1m_tokens": None if price is None else {"input": price[0], "output": price[1]},
                "cost_usd": cost}


class MalformedReply(Exception):
    """A reply that is not a usable chat completion (retried, then an empty answer)."""


class _Transient(Exception):
    """A failure worth retrying; the message says what happened."""


class _Stopped(BenchError):
    """Raised by requests abandoned because another one failed (that one's error is what the user sees)."""


class EndpointClient:
    """Answers chat prompts through one `openai.OpenAI` client with the retry, fail-fast and accounting rules of
    the module docstring. `stop()` makes pending and future `answer` calls raise instead of sending requests."""

    def __init__(self, endpoint: Endpoint, request: RequestSettings, seed: int, settings: EndpointSettings,
                 rng: random.Random | None = None) -> None:
        import openai

        self.endpoint = endpoint
        self.request = request
        self.seed = seed
        self.settings = settings
        self.usage = Usage()
        self._client = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=0,
                                     timeout=openai.Timeout(settings.timeout_s, connect=settings.connect_timeout_s))
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._reached = threading.Event()
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def answer(self, messages: Chat) -> str | None:
        """The reply text, or None when the attempts ran out on a malformed reply. Raises BenchError on a fatal
        error or when transient errors outlast the attempts, and _Stopped once `stop()` was called."""
        failure: Exception | None = None
        for attempt in range(1, self.settings.max_attempts + 1):
            if attempt > 1:
                self._count(retries=1)
                self._stopped.wait(self.settings.backoff_s(attempt - 1, self._rng))
            if self._stopped.is_set():
                raise _Stopped("Stopped after another request failed.")
            try:
                return self._request(messages)
            except _Transient as error:
                failure = error
            except MalformedReply as error:
                self._count(malformed_replies=1)
                failure = error
        if isinstance(failure, MalformedReply):
            self._count(failed_prompts=1)
            return None
        raise BenchError(f"Gave up on {self.endpoint.base_url} after {self.settings.max_attempts} attempts for one "
                         f"prompt (last: {failure}); answers received so far are cached, so a rerun resumes.")

    def _request(self, messages: Chat) -> str:
        """One attempt: the text, or _Transient / MalformedReply / BenchError (fatal)."""
        import openai

        self._count(requests=1)
        try:
            reply = self._client.chat.completions.create(
                model=self.endpoint.model, messages=[dict(message) for message in messages],
                temperature=self.request.temperature, max_tokens=self.request.max_tokens, seed=self.seed)
        except openai.APIStatusError as error:
            self._reached.set()
            raise self._status_error(error) from None
        except openai.APIConnectionError as error:
            if not self._reached.is_set() and _is_connect_failure(error):
                raise BenchError(f"Cannot connect to {self.endpoint.base_url} ({_cause(error)}); is the server "
                                 f"running and the base URL right?") from None
            raise _Transient(_cause(error)) from None
        except (json.JSONDecodeError, openai.APIResponseValidationError) as error:
            self._reached.set()
            raise MalformedReply(f"{type(error).__name__}: {error}"[:200]) from None
        self._reached.set()
        text, usage = _reply_text(reply)
        if usage is None:
            self._count(replies_without_usage=1)
        else:
            self._count(prompt_tokens=usage[0], completion_tokens=usage[1])
        return text

    def _status_error(self, error: Any) -> Exception:
        """A 4xx/5xx as _Transient (retry) or a one-line BenchError (fatal)."""
        status = error.status_code
        detail = _error_detail(error)
        where = self.endpoint.base_url
        if status in RETRYABLE_STATUS or status >= 500:
            return _Transient(f"HTTP {status}: {detail}")
        if status in (401, 403):
            return BenchError(f"{where} refused the API key (HTTP {status}: {detail}); check OPENAI_API_KEY.")
        if status == 404:
            return BenchError(f"Model '{self.endpoint.model}' not found at {where} (HTTP 404: {detail}); check the "
                              f"model name and that the base URL ends in /v1.")
        return BenchError(f"{where} rejected the request for model '{self.endpoint.model}' (HTTP {status}: "
                          f"{detail}).")

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, amount in increments.items():
                setattr(self.usage, name, getattr(self.usage, name) + amount)


def _reply_text(reply: Any) -> tuple[str, tuple[int, int] | None]:
    """(text of the first choice, (prompt tokens, completion tokens) or None); MalformedReply when there is no
    text. Replies are untrusted: every field is checked, nothing is assumed."""
    choices = getattr(reply, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise MalformedReply("no choices")
    message = getattr(choices[0], "message", None)
    text = getattr(message, "content", None)
    if not isinstance(text, str):
        raise MalformedReply("no message content")
    usage = getattr(reply, "usage", None)
    prompt_tokens = getattr(usage, "prompt_tokens", None)
    completion_tokens = getattr(usage, "completion_tokens", None)
    if isinstance(prompt_tokens, int) and isinstance(completion_tokens, int):
        return text, (prompt_tokens, completion_tokens)
    return text, None


def _is_connect_failure(error: Exception) -> bool:
    """Whether the connection itself could not be made (refused, unknown host, connect timeout), as opposed to a
    connection lost or a reply too slow."""
    import httpx2

    return isinstance(error.__cause__, (httpx2.ConnectError, httpx2.ConnectTimeout))


def _cause(error: Exception) -> str:
    """A short description of a connection error from its underlying cause."""
    cause = error.__cause__ or error
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {text}"[:200] if text else type(cause).__name__


def _error_detail(error: Any) -> str:
    """The server's error message (OpenAI-shaped body) on one short line."""
    body = error.body
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
    text = str(message or error.message or "no details")
    return " ".join(text.split())[:200]


def answer_prompts(client: EndpointClient, cache: RolloutCache, prompts: Sequence[Chat],
                   on_answer: Callable[[], None] = lambda: None) -> list[str]:
    """One answer per prompt: cached ones read, the rest asked `concurrency` at a time and cached as they arrive.
    The first error stops new requests and is raised once the requests in flight are done (their answers are
    kept); the same happens on an interrupt (Ctrl-C). The client is stopped afterwards (one client per run)."""
    fingerprint, request, seed = client.endpoint.fingerprint, client.request, client.seed
    answers: list[str | None] = []
    for prompt in prompts:
        cached = cache.get(fingerprint, ENDPOINT_PRODUCER, prompt, request, seed)
        answers.append(None if cached is None else cached[0])
    missing = [index for index, answer in enumerate(answers) if answer is None]
    client.usage.prompts += len(prompts)
    client.usage.cached_prompts += len(prompts) - len(missing)

    def work(index: int) -> None:
        text = client.answer(prompts[index])
        if text is not None:
            cache.put(fingerprint, ENDPOINT_PRODUCER, prompts[index], request, seed, [text])
        answers[index] = text or ""
        on_answer()

    pool = ThreadPoolExecutor(max_workers=client.settings.concurrency, thread_name_prefix="endpoint")
    try:
        done, _ = wait([pool.submit(work, index) for index in missing], return_when=FIRST_EXCEPTION)
    finally:
        client.stop()
        pool.shutdown(wait=True, cancel_futures=True)
    errors = [future.exception() for future in done if future.exception() is not None]
    first = next((error for error in errors if not isinstance(error, _Stopped)), errors[0] if errors else None)
    if first is not None:
        raise first
    return [answer or "" for answer in answers]
