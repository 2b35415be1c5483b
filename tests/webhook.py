"""A member's webhook receiver on loopback: checks signatures, drops repeated event ids, can be slow or fail."""

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Receiver:
    """`slow_first`: the first delivery of each event is taken but answered after `slow_seconds` (the
    sender times out and sends it again). `fail`: answer 500 to everything."""

    secret: str = ""
    slow_first: bool = False
    slow_seconds: float = 1.0
    fail: bool = False
    deliveries: list[dict] = field(default_factory=list)  # every POST, repeats included
    events: dict[str, dict] = field(default_factory=dict)  # event id -> body, each once
    bad_signatures: int = 0
    url: str = ""


def start(receiver: Receiver) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            event_id = self.headers.get("X-HIE-Event-Id", "")
            expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
            with lock:
                receiver.deliveries.append({"id": event_id, "body": json.loads(body)})
                if not hmac.compare_digest(expected, self.headers.get("X-HIE-Signature", "")):
                    receiver.bad_signatures += 1
                first = event_id not in receiver.events
                receiver.events.setdefault(event_id, json.loads(body))  # a repeat is dropped by its id
            if receiver.fail:
                self._answer(500)
                return
            if receiver.slow_first and first:
                time.sleep(receiver.slow_seconds)
            self._answer(204)

        def _answer(self, status: int) -> None:
            try:
                self.send_response(status)
                self.end_headers()
            except OSError:
                pass  # the sender gave up waiting

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/hie"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
