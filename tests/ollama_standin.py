"""A stand-in for Ollama: a real HTTP server on a free loopback port.

It speaks the part of Ollama's API the planner uses, as Ollama's API docs
describe it: `GET /api/version`, `GET /api/tags` (the models it has pulled),
and `POST /api/chat` with `stream: false`, answering 404 with Ollama's
"model not found" error for a model it does not have. Chat answers are
scripted: each `Reply` is used once, in order, and the requests are kept for
the test to read. A reply can also be hostile: huge (`padding`, written in
chunks, so the stand-in never holds it), slow (`delay`), hung until released
(`release`), or not Ollama's JSON at all (`raw`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import sys
import threading
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERSION = "0.6.2"


@dataclasses.dataclass(frozen=True)
class Reply:
    """One scripted answer to `POST /api/chat`."""

    # The assistant message's content, for a 200 answer.
    content: str = ""
    status: int = 200
    # Ollama's `{"error": ...}` text, for an answer that is not 200.
    error: str = ""
    # Seconds to wait before answering (ended early when the stand-in stops).
    delay: float = 0.0
    # Answer only once this is set (or the stand-in stops): lets a test hold
    # several calls inside the model at once.
    release: threading.Event | None = None
    # Spaces put before `content`, written a chunk at a time: a huge answer.
    padding: int = 0
    # The body exactly as sent, instead of Ollama's JSON.
    raw: bytes | None = None


def valid(answer: dict[str, Any]) -> Reply:
    """A reply whose content is `answer` as plain JSON."""
    return Reply(content=json.dumps(answer))


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that stops reading a huge answer closes its connection: expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class OllamaStandIn:
    """Start with `with OllamaStandIn(models=[...]) as ollama:`; `ollama.url` is its address."""

    def __init__(self, models: tuple[str, ...] = ("llama3.1:latest",), port: int = 0) -> None:
        self.models = list(models)
        self.replies: deque[Reply] = deque()
        # The JSON bodies of the /api/chat requests, in order.
        self.chats: list[dict[str, Any]] = []
        self.paths: list[str] = []
        # Bytes of the last /api/chat body written before the client stopped reading.
        self.sent = 0
        # Characters of padding in the /api/tags reply: a huge listing.
        self.tags_padding = 0
        # Chats that have been answered (or abandoned by the client).
        self.answered = 0
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for the serving loop's next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        """The stand-in's base URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *replies: Reply) -> None:
        """Answer the next chats with these replies, in order."""
        self.replies.extend(replies)

    def __enter__(self) -> OllamaStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # --- the API -----------------------------------------------------------------

    def _tags(self) -> dict[str, Any]:
        padding = {"padding": " " * self.tags_padding} if self.tags_padding else {}
        return {
            **padding,
            "models": [
                {
                    "name": name,
                    "model": name,
                    "modified_at": "2025-01-06T10:00:00.000000000Z",
                    "size": 4_920_753_328,
                    "digest": "46e0c10c039e019119339687c3c1757cc81b9da49709a3b3924863ba87ca666e",
                    "details": {
                        "parent_model": "",
                        "format": "gguf",
                        "family": "llama",
                        "families": ["llama"],
                        "parameter_size": "8.0B",
                        "quantization_level": "Q4_K_M",
                    },
                }
                for name in self.models
            ],
        }

    def _has(self, model: str) -> bool:
        return model in self.models or f"{model}:latest" in self.models

    def _chat(self, request: dict[str, Any]) -> tuple[int, dict[str, Any], Reply]:
        self.chats.append(request)
        model = str(request.get("model", ""))
        if not self._has(model):
            return 404, {"error": f'model "{model}" not found, try pulling it first'}, Reply()
        if not self.replies:
            return 500, {"error": "the stand-in has no scripted reply left"}, Reply()
        reply = self.replies.popleft()
        if reply.delay:
            self._stopping.wait(reply.delay)
        while reply.release is not None and not reply.release.wait(0.02):
            if self._stopping.is_set():
                break
        if reply.status != 200:
            return reply.status, {"error": reply.error or "internal error"}, reply
        return (
            200,
            {
                "model": model,
                "created_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                "message": {"role": "assistant", "content": reply.content},
                "done_reason": "stop",
                "done": True,
                "total_duration": 2_254_970_291,
                "load_duration": 574_751_416,
                "prompt_eval_count": 34,
                "prompt_eval_duration": 1_502_000_000,
                "eval_count": 12,
                "eval_duration": 175_000_000,
            },
            reply,
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests read `standin.chats` instead."""

            def _send(self, status: int, body: dict[str, Any], reply: Reply | None = None) -> None:
                reply = reply or Reply()
                if reply.raw is not None:
                    parts = [reply.raw]
                    size = len(reply.raw)
                else:
                    padding = reply.padding if "message" in body else 0
                    head, tail = _around_padding(body, padding)
                    parts = [head, *_spaces(padding), tail]
                    size = len(head) + padding + len(tail)
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                standin.sent = 0
                for part in parts:
                    self.wfile.write(part)
                    standin.sent += len(part)

            def do_GET(self) -> None:
                standin.paths.append(self.path)
                if self.path == "/api/version":
                    self._send(200, {"version": VERSION})
                elif self.path == "/api/tags":
                    self._send(200, standin._tags())
                else:
                    self._send(404, {"error": "404 page not found"})

            def do_POST(self) -> None:
                standin.paths.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path != "/api/chat":
                    self._send(404, {"error": "404 page not found"})
                    return
                try:
                    request = json.loads(raw)
                except ValueError:
                    self._send(400, {"error": "invalid JSON body"})
                    return
                status, body, reply = standin._chat(request)
                # The client may have given up already (its deadline passed),
                # or stopped reading a huge answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._send(status, body, reply)
                standin.answered += 1

        return Handler


CHUNK = 64 * 1024
_MARK = "\x00padding\x00"


def _around_padding(body: dict[str, Any], padding: int) -> tuple[bytes, bytes]:
    """The JSON of `body` before and after `padding` spaces at the start of its content."""
    if not padding:
        return json.dumps(body).encode(), b""
    message = body["message"]
    marked = {**body, "message": {**message, "content": _MARK + message["content"]}}
    head, tail = json.dumps(marked).split(json.dumps(_MARK)[1:-1], 1)
    return head.encode(), tail.encode()


def _spaces(count: int) -> Iterator[bytes]:
    chunk = b" " * CHUNK
    while count > 0:
        yield chunk[: min(count, CHUNK)]
        count -= CHUNK
