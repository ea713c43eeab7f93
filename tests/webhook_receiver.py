"""A real webhook receiver on 127.0.0.1 for the function-calling tests: it checks each request's
signature the way the README tells receivers to, and records what it was sent.

Paths choose the behaviour: `/ok` answers JSON about the call, `/slow` answers after
`slow_seconds`, `/error` answers 500, `/huge` streams 50 MB (chunked, no length), `/redirect`
redirects to the cloud metadata address, `/hang` holds the request until released.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HUGE_BYTES = 50 * 1024 * 1024


def verified(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """The README's five lines."""
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    fresh = abs(time.time() - int(timestamp)) < 300
    return fresh and hmac.compare_digest("sha256=" + expected.hexdigest(), signature)


class WebhookReceiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.slow_seconds = 3.0
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                signed = verified(
                    receiver.secret,
                    self.headers.get("X-Threadline-Timestamp", "0"),
                    body,
                    self.headers.get("X-Threadline-Signature", ""),
                )
                payload = json.loads(body) if signed else None
                with receiver.lock:
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "signed": signed,
                            "payload": payload,
                            "headers": dict(self.headers),
                            "at": time.monotonic(),
                        }
                    )
                route = self.path.partition("?")[0]
                if not signed:
                    self.answer(401, b'{"error": "bad signature"}')
                elif route == "/ok":
                    city = payload["arguments"].get("city", "?")
                    user = payload["user"]["username"]
                    self.answer(200, json.dumps({"city": city, "sky": "clear", "for": user}))
                elif route == "/slow":
                    time.sleep(receiver.slow_seconds)
                    self.answer(200, b'{"late": true}')
                elif route == "/error":
                    self.answer(500, b"Internal Server Error: the weather broke")
                elif route == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif route == "/huge":
                    self.huge()
                elif route == "/hang":
                    receiver.release.wait(60)
                    self.answer(200, b'{"released": true}')
                else:
                    self.answer(404, b"no such path")

            def answer(self, status: int, body: bytes | str) -> None:
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def huge(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"x" * (1024 * 1024)
                try:
                    for _ in range(HUGE_BYTES // len(chunk)):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the client stopped reading, as it should

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def start(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def received(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]
