"""A webhook receiver process for tests and benchmarks: records every request (body, headers, time, answer) and
answers 200, or, when told, another status for a while.

Run as `python -m tests.support.webhook_receiver --port P --record FILE [--fail-status 500 --fail-seconds 30]`;
`WebhookReceiver` starts and stops it and reads what it recorded. Control: `POST /_control
{"status": 500, "seconds": 30}` (no `seconds`: until told otherwise; status 200 ends it). Each request is
written to the record file before it is answered, so the file holds everything the receiver accepted even
when the sender never saw the answer.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

__all__ = ["ReceivedRequest", "WebhookReceiver"]

PROJECT_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ReceivedRequest:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def key(self) -> str | None:
        return self.headers.get("x-sendense-idempotency-key")

    def json(self) -> dict:
        return json.loads(self.body)


class _State:
    def __init__(self, record: Path, status: int, seconds: float | None) -> None:
        self.record = record
        self.lock = threading.Lock()
        self.set(status, seconds)

    def set(self, status: int, seconds: float | None) -> None:
        self.status = status
        self.until = None if seconds is None else time.monotonic() + seconds

    def answer(self) -> int:
        if self.status != 200 and self.until is not None and time.monotonic() >= self.until:
            self.status, self.until = 200, None
        return self.status


def _handler(state: _State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes: without this, Nagle's algorithm holds the body back until
        # the sender's delayed ACK (40 ms per request), which would be counted as our delivery time.
        disable_nagle_algorithm = True

        def log_message(self, *_):  # quiet: the record file is the log
            return

        def _reply(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._reply(200, b"ok")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/_control":
                order = json.loads(body)
                state.set(int(order["status"]), order.get("seconds"))
                self._reply(200, b"ok")
                return
            if len(body) < int(self.headers.get("Content-Length") or 0):
                return  # the sender went away mid-body: nothing was delivered, and nobody hears an answer
            with state.lock:
                status = state.answer()
                line = {
                    "at": time.time(),
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": base64.b64encode(body).decode(),
                    "answered": status,
                }
                with state.record.open("a") as f:
                    f.write(json.dumps(line) + "\n")
            self._reply(status, b"recorded" if status == 200 else b"not now")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="webhook receiver that records every request")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--fail-status", type=int, default=200)
    parser.add_argument("--fail-seconds", type=float, default=None)
    args = parser.parse_args()
    state = _State(args.record, args.fail_status, args.fail_seconds)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(state))
    server.daemon_threads = True
    server.serve_forever()


class WebhookReceiver:
    """The receiver as a process of its own on `port`, recording into `record` (kept across restarts)."""

    def __init__(self, port: int, record: Path) -> None:
        self.port = port
        self.record = record
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self, fail_status: int = 200, fail_seconds: float | None = None) -> WebhookReceiver:
        args = [sys.executable, "-m", "tests.support.webhook_receiver", "--port", str(self.port),
                "--record", str(self.record), "--fail-status", str(fail_status)]  # fmt: skip
        if fail_seconds is not None:
            args += ["--fail-seconds", str(fail_seconds)]
        self.record.touch()
        with self.record.with_suffix(".log").open("ab") as log:
            self.proc = subprocess.Popen(args, cwd=PROJECT_DIR, start_new_session=True, stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/_health", timeout=1).raise_for_status()
                return self
            except httpx.HTTPError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"webhook receiver exited with {self.proc.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError(f"webhook receiver on port {self.port} did not answer")

    def answer(self, status: int, seconds: float | None = None) -> None:
        """Answer `status` to every request from now on (for `seconds`, then 200 again)."""
        order = {"status": status, "seconds": seconds}
        httpx.post(f"http://127.0.0.1:{self.port}/_control", json=order, timeout=5).raise_for_status()

    def stop(self) -> None:
        from tests.support.devstack import DevStack

        if self.proc is not None:
            DevStack.stop_process(self.proc, timeout=5)
            self.proc = None

    def requests(self) -> list[ReceivedRequest]:
        out = []
        for line in self.record.read_text().splitlines():
            r = json.loads(line)
            out.append(ReceivedRequest(r["at"], r["path"], r["headers"], base64.b64decode(r["body"]), r["answered"]))
        return out

    def accepted(self) -> list[ReceivedRequest]:
        """The requests it answered 200: those a sender may count as delivered."""
        return [r for r in self.requests() if r.answered == 200]

    def accepted_keys(self) -> Counter:
        return Counter(r.key for r in self.accepted())

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *_) -> None:
        self.stop()


if __name__ == "__main__":
    main()
