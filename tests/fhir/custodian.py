"""A member's FHIR server on loopback that holds documents, with faults a test can inject."""

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

CLIENT_ID, CLIENT_SECRET = "hie-node", "custodian-secret-for-tests"


@dataclass
class Custodian:
    """Serves POST /token (client credentials) and GET /r4/Binary/<name> to bearers of its tokens.

    `faults[name]` makes that document fail: "500", "slow" (answers after `slow_seconds`), or
    "wrong" (the right size, other bytes). GET /r4/DocumentReference?patient.identifier=system|value
    lists `listings[value]`; `faults["search"]` makes the listing fail the same ways.
    """

    documents: dict[str, bytes] = field(default_factory=dict)
    listings: dict[str, list[dict]] = field(default_factory=dict)  # patient identifier value -> DocumentReferences
    faults: dict[str, str] = field(default_factory=dict)
    slow_seconds: float = 3.0
    tokens: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    base: str = ""

    def url(self, name: str) -> str:
        return f"{self.base}/r4/Binary/{name}"


def start(custodian: Custodian) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if self.path != "/token" or self.headers.get("Authorization") != expected:
                self._send(401, b'{"error": "invalid_client"}')
                return
            token = f"token-{len(custodian.tokens) + 1}"
            custodian.tokens.add(token)
            self._send(200, f'{{"access_token": "{token}", "token_type": "Bearer", "expires_in": 300}}'.encode())

        def do_GET(self) -> None:
            custodian.requests.append(self.path)
            name = self.path.rsplit("/", 1)[-1]
            if self.headers.get("Authorization", "").removeprefix("Bearer ") not in custodian.tokens:
                self._send(401, b"{}")
                return
            if self.path.startswith("/r4/DocumentReference?"):
                self._listing()
                return
            if name not in custodian.documents:
                self._send(404, b"{}")
                return
            fault = custodian.faults.get(name)
            if fault == "500":
                self._send(500, b"{}")
                return
            if fault == "slow":
                time.sleep(custodian.slow_seconds)
            content = custodian.documents[name]
            if fault == "wrong":
                content = bytes(len(content))
            self._send(200, content, "application/pdf")

        def _listing(self) -> None:
            fault = custodian.faults.get("search")
            if fault == "500":
                self._send(500, b"{}")
                return
            if fault == "slow":
                time.sleep(custodian.slow_seconds)
            query = parse_qs(urlparse(self.path).query)
            value = query.get("patient.identifier", ["|"])[0].split("|", 1)[1]
            entries = [{"resource": r} for r in custodian.listings.get(value, [])]
            bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
            self._send(200, json.dumps(bundle).encode(), "application/fhir+json")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    custodian.base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
