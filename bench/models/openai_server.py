"""A small OpenAI-compatible chat-completions server for a local backbone (tests, and `bench serve`).

Serves `POST /v1/chat/completions` (messages, max_tokens or max_completion_tokens, temperature, top_p, seed, n=1)
and `GET /v1/models` on a threaded `http.server`, generating through bench's one rollout engine, so an endpoint
run against it sees exactly what a local run would generate for the same prompt and settings. Requests are
answered one generation at a time (one model, shared) but accepted concurrently, so slow replies and concurrency
behave as with a real server. Replies carry OpenAI-shaped `usage` with exact token counts.

For tests, `ServerHandle.faults` is a queue of actions consumed one per chat-completions request, before any
generation: a status code ("429", "500", "401", ...) answers with that status and an OpenAI-shaped error body;
"stall" holds the request until the test calls `FaultQueue.release()` (`FaultQueue.stalled` is set once a request is
held), then answers normally, so a test can make a reply slower than any timeout without timing anything;
"malformed" answers 200 with broken JSON; "empty_choices"
answers 200 with no choices; "drop" closes the connection without a reply.
"""

import json
import re
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.errors import BenchError
from bench.models.backbones import Backbone
from bench.models.rollouts import RolloutEngine, make_engine
from bench.models.sampling import SamplingSettings, prompt_token_ids

DEFAULT_MAX_TOKENS = 256
"""Completion budget when a request names none."""

_FAULT_PATTERN = re.compile(r"^(\d{3}|stall|malformed|empty_choices|drop)$")


class RequestError(Exception):
    """A request the server refuses: HTTP status, OpenAI error type and code, and a message."""

    def __init__(self, status: int, message: str, error_type: str = "invalid_request_error",
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code


class FaultQueue:
    """Thread-safe queue of fault actions (see the module docstring), consumed one per request."""

    def __init__(self) -> None:
        self._actions: deque[str] = deque()
        self._lock = threading.Lock()
        self.stalled = threading.Event()
        """Set when a "stall" request is being held."""
        self._released = threading.Event()

    def hold(self) -> None:
        """Hold the calling request (a "stall") until `release()`."""
        self.stalled.set()
        self._released.wait()

    def release(self) -> None:
        """Let every held request go, and those stalled later too, until `clear()`."""
        self._released.set()

    def add(self, *actions: str) -> None:
        """Queue actions; an unknown action is a ValueError now rather than a surprise mid-test."""
        for action in actions:
            if not _FAULT_PATTERN.match(action):
                raise ValueError(f"Unknown fault action {action!r}.")
        with self._lock:
            self._actions.extend(actions)

    def next(self) -> str | None:
        with self._lock:
            return self._actions.popleft() if self._actions else None

    def clear(self) -> None:
        """Drop queued actions, let held requests go, and make the next "stall" hold again."""
        with self._lock:
            self._actions.clear()
        self._released.set()
        self.stalled.clear()
        self._released = threading.Event()

    def __len__(self) -> int:
        with self._lock:
            return len(self._actions)


@dataclass
class BackboneGenerator:
    """One backbone behind one engine; `complete` serialises generation (the model is shared)."""

    backbone: Backbone
    engine: RolloutEngine
    lock: threading.Lock = field(default_factory=threading.Lock)

    def complete(self, messages: list[dict[str, str]], settings: SamplingSettings, seed: int) -> tuple[str, int, int]:
        """(text, prompt tokens, completion tokens) for one chat prompt; a prompt too long for the context is a
        RequestError (HTTP 400), as from other servers."""
        with self.lock:
            try:
                self.engine.check_fits([messages], settings)
            except BenchError as error:
                raise RequestError(400, str(error), code="context_length_exceeded") from None
            prompt_tokens = len(prompt_token_ids(self.backbone.tokenizer, messages))
            before = self.engine.tokens_generated
            text = self.engine.generate([messages], settings, seed)[0][0]
            completion_tokens = self.engine.tokens_generated - before
        return text, prompt_tokens, completion_tokens


class ServerHandle:
    """A running server: `url` (base URL ending in /v1, for OpenAI clients), `faults`, request counters, and
    `close()`. Usable as a context manager."""

    def __init__(self, httpd: "_Server", thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        host, port = httpd.server_address[:2]
        self.url = f"http://{host}:{port}/v1"
        self.model_name = httpd.model_name

    @property
    def faults(self) -> FaultQueue:
        return self._httpd.faults

    @property
    def chat_requests(self) -> int:
        """Chat-completions requests received (faulted ones included)."""
        return self._httpd.chat_requests

    def close(self) -> None:
        """Stop accepting requests, finish the requests in flight (so no generation outlives the server), and
        release the port (held "stall" requests are let go first)."""
        self.faults.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], generator: BackboneGenerator, model_name: str) -> None:
        super().__init__(address, _Handler)
        self.generator = generator
        self.model_name = model_name
        self.faults = FaultQueue()
        self.chat_requests = 0
        self._count_lock = threading.Lock()

    def count_chat_request(self) -> None:
        with self._count_lock:
            self.chat_requests += 1


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per request on stderr would drown test output and `bench serve` progress."""

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            self._send_error(RequestError(404, f"No route GET {self.path}.", code="not_found"))
            return
        self._send_json(200, {"object": "list", "data": [
            {"id": self.server.model_name, "object": "model", "created": 0, "owned_by": "bench"}]})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_error(RequestError(404, f"No route POST {self.path}.", code="not_found"))
            return
        self.server.count_chat_request()
        action = self.server.faults.next()
        if action is not None and not self._apply_fault(action):
            return
        try:
            body = self._read_json()
            self._send_json(200, self._complete(body))
        except RequestError as error:
            self._send_error(error)

    def _apply_fault(self, action: str) -> bool:
        """Act out one fault; True when the request should then be answered normally."""
        if action == "stall":
            self.server.faults.hold()
            return True
        if action == "drop":
            self.close_connection = True
        elif action == "malformed":
            self._send_bytes(200, b'{"id": "chatcmpl-broken", "choices": [', "application/json")
        elif action == "empty_choices":
            self._send_json(200, {"id": "chatcmpl-empty", "object": "chat.completion", "created": int(time.time()),
                                  "model": self.server.model_name, "choices": []})
        else:
            status = int(action)
            self._send_error(RequestError(status, f"Injected fault: HTTP {status}.", "server_error", "injected"))
        return False

    def _read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RequestError(400, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise RequestError(400, "The request body must be a JSON object.")
        return body

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Validate a chat-completions request, generate, and build the OpenAI-shaped reply."""
        model = body.get("model")
        if model != self.server.model_name:
            raise RequestError(404, f"The model `{model}` does not exist; this server serves "
                                    f"`{self.server.model_name}`.", code="model_not_found")
        messages = _messages(body.get("messages"))
        if body.get("n", 1) != 1:
            raise RequestError(400, "Only n=1 is supported.", code="unsupported_value")
        max_tokens = _given(body, "max_completion_tokens", _given(body, "max_tokens", DEFAULT_MAX_TOKENS))
        try:
            settings = SamplingSettings(max_new_tokens=int(max_tokens),
                                        temperature=float(_given(body, "temperature", 1.0)),
                                        top_p=float(_given(body, "top_p", 1.0)))
            seed = int(_given(body, "seed", 0))
        except (BenchError, TypeError, ValueError) as error:
            raise RequestError(400, f"Invalid sampling settings: {error}") from None
        text, prompt_tokens, completion_tokens = self.server.generator.complete(messages, settings, seed)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.server.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "length" if completion_tokens >= settings.max_new_tokens else "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def _send_error(self, error: RequestError) -> None:
        self._send_json(error.status, {"error": {"message": error.message, "type": error.error_type,
                                                 "param": None, "code": error.code}})

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send_bytes(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), "application/json")

    def _send_bytes(self, status: int, data: bytes, content_type: str) -> None:
        """Write a whole response; a client that gave up (timeout) is not an error of the server."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _given(body: dict[str, Any], name: str, default: Any) -> Any:
    """A request field, or `default` when absent or null (OpenAI treats null as "use the default")."""
    value = body.get(name)
    return default if value is None else value


def _messages(value: Any) -> list[dict[str, str]]:
    """The request's messages as role/content string pairs, or a RequestError saying what is wrong."""
    if not isinstance(value, list) or not value:
        raise RequestError(400, "`messages` must be a non-empty list.", code="invalid_messages")
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            raise RequestError(400, f"messages[{index}] must have string `role` and `content`.",
                               code="invalid_messages")
        messages.append({"role": message["role"], "content": message["content"]})
    return messages


def serve(backbone: Backbone, host: str = "127.0.0.1", port: int = 0, *, backend: str = "transformers",
          model_name: str | None = None, faults: Iterable[str] = ()) -> ServerHandle:
    """Start serving `backbone` on host:port (0 picks a free port) in a background thread and return its handle.

    `model_name` is the id clients must ask for (default: the backbone's registry name); `faults` pre-fills the
    fault queue.
    """
    engine = make_engine(backend, backbone, batch_size=1, progress=False)
    httpd = _Server((host, port), BackboneGenerator(backbone, engine), model_name or backbone.spec.name)
    httpd.faults.add(*faults)
    thread = threading.Thread(target=httpd.serve_forever, name=f"openai-server-{port}", daemon=True)
    thread.start()
    return ServerHandle(httpd, thread)


def serve_until_interrupted(backbone: Backbone, host: str, port: int, backend: str,
                            echo: Callable[[str], object]) -> None:
    """`bench serve`: serve `backbone` in the foreground, say where (and how to point `bench run` at it), and stop
    cleanly on Ctrl-C; a port that cannot be bound is a BenchError."""
    # Python installs its Ctrl-C handler only when SIGINT is not ignored at start, and a shell ignores it for
    # background jobs: set it before saying "serving", so Ctrl-C (and SIGTERM) stop it however it was started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        handle = serve(backbone, host, port, backend=backend)
    except OSError as error:
        raise BenchError(f"Cannot serve on {host}:{port}: {error.strerror or error}.") from None
    echo(f"serving {handle.model_name} at {handle.url} (bench run --model openai:{handle.model_name} "
         f"--base-url {handle.url}); Ctrl-C stops")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        echo("stopping")
    finally:
        handle.close()
