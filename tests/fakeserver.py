"""A scripted OpenAI-compatible server on loopback, for fault, security and load tests (and the load benchmark).

Every text under classification (the prompt's last ``Text: ...``) gets a deterministic *fate* from a hash of the
text, so a killed-and-restarted client meets the same script::

    ok         logprobs favouring " positive" (text hash even) or " negative" (odd)
    garbage    a 200 answer that is neither label word (" banana", no logprobs): the client must abstain
    r429       first attempt: HTTP 429 with ``Retry-After``
    r500       first attempt: HTTP 500
    timeout    first attempt: no answer until the client gives up and closes the connection
    drop       first attempt: headers sent, body cut, connection shut
    badjson    first attempt: HTTP 200 with a malformed JSON body

After its first attempt a faulty text is answered normally.  ``scored[text]`` counts the answers that carried a
score or a final non-label answer (what a client may store), so "every text scored exactly once" is
``all(v == 1 for v in scored.values())``.  ``max_inflight`` is the largest number of requests the server held at
once: a request counts from the moment its body is read until just before its answer is written (or until the
client hangs up), so a client that keeps at most N requests in flight can never push it above N.

Run as a script (``python tests/fakeserver.py --port 0 --fail 0.1``) it prints its URL and serves until killed.
"""

from __future__ import annotations

import hashlib
import json
import re
import select
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TEXT_RE = re.compile(r"Text: (.*)\nLabel:\s*$", re.S)
FAULTS = ("r429", "r500", "timeout", "drop", "badjson")


def text_of(prompt: str) -> str:
    m = TEXT_RE.search("Text: " + prompt.rsplit("Text: ", 1)[-1])
    return m.group(1) if m else ""


def _h(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big")


class ScriptedServer:
    """``fail``: share of texts whose first attempt fails (split evenly over ``faults``); ``garbage``: share that
    answer a non-label word.  ``gate_after``: once that many texts are scored, hold every further request
    (unanswered, uncounted) until :meth:`release_gate`; held requests are then closed without an answer."""

    def __init__(self, *, fail: float = 0.1, garbage: float = 0.0, faults=FAULTS, key: str | None = None,
                 retry_after: str = "0.05", gate_after: int | None = None, max_hold: float = 30.0,
                 redirect_to: str | None = None):
        self.fail, self.garbage, self.faults, self.key = fail, garbage, tuple(faults), key
        self.retry_after, self.gate_after, self.max_hold = retry_after, gate_after, max_hold
        self.redirect_to = redirect_to  # answer every request with a 307 to this URL
        self.lock = threading.Lock()
        self.attempts: Counter = Counter()   # requests per text
        self.scored: Counter = Counter()     # answers a client may store, per text
        self.failed: Counter = Counter()     # injected failures, per fate
        self.inflight = 0
        self.max_inflight = 0
        self.hosts: Counter = Counter()
        self.paths: Counter = Counter()
        self.auth: Counter = Counter()
        self.held = 0
        self.gate = threading.Event()
        self.gate.set()
        self.gate_closed = threading.Event()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                self._live = False
                try:
                    outer._handle(self)
                except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
                    self.close_connection = True
                finally:
                    outer._leave(self)

            def do_GET(self):
                outer._send(self, 404, {"error": {"message": "not here"}})

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.srv.request_queue_size = 128
        self.port = self.srv.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ bookkeeping
    def fate(self, text: str) -> str:
        u = (_h(text) % 10_000) / 10_000
        if u < self.fail and self.faults:
            return self.faults[int(u / self.fail * len(self.faults)) % len(self.faults)]
        if u >= 1.0 - self.garbage:  # the top of the range: the same texts whatever ``fail`` is
            return "garbage"
        return "ok"

    def _enter(self, h) -> None:
        with self.lock:
            h._live = True
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)

    def _leave(self, h) -> None:
        with self.lock:
            if getattr(h, "_live", False):
                h._live = False
                self.inflight -= 1

    def release_gate(self) -> None:
        self.gate_after = None
        self.gate.set()

    def close(self) -> None:
        self.release_gate()
        self.srv.shutdown()
        self.srv.server_close()

    def stats(self) -> dict:
        with self.lock:
            return {"texts": len(self.attempts), "requests": sum(self.attempts.values()),
                    "scored": sum(self.scored.values()), "failed": dict(self.failed),
                    "max_inflight": self.max_inflight, "held": self.held}

    # ------------------------------------------------------------------ replies
    def _send(self, h, code, obj=None, raw: bytes | None = None, headers=()):
        body = raw if raw is not None else json.dumps(obj).encode()
        self._leave(h)  # the answer is leaving: the client may send its next request as soon as it reads it
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()

    def _wait_hangup(self, h, limit: float) -> None:
        """Hold the request until the client closes its connection (its timeout) or ``limit`` seconds pass."""
        end = time.monotonic() + limit
        sock = h.connection
        while time.monotonic() < end:
            r, _, _ = select.select([sock], [], [], 0.02)
            if r:
                try:
                    if not sock.recv(1, socket.MSG_PEEK):
                        break
                except OSError:
                    break
        self._leave(h)
        h.close_connection = True

    def _handle(self, h) -> None:
        n = int(h.headers.get("Content-Length", 0))
        req = json.loads(h.rfile.read(n))
        self._enter(h)
        chat = h.path.endswith("/chat/completions")
        with self.lock:
            self.paths[h.path] += 1
            self.hosts[h.headers.get("Host")] += 1
            self.auth[h.headers.get("Authorization")] += 1
        if self.redirect_to:
            return self._send(h, 307, {"error": {"message": "moved"}},
                              headers=[("Location", self.redirect_to + h.path.split("/v1", 1)[-1])])
        if self.key is not None and h.headers.get("Authorization") != f"Bearer {self.key}":
            return self._send(h, 401, {"error": {"message": "Incorrect API key provided"}})
        prompt = req["messages"][-1]["content"] if chat else req["prompt"]
        text = text_of(prompt)
        with self.lock:
            if self.gate_after is not None and len(self.scored) >= self.gate_after:
                self.gate.clear()
                self.gate_closed.set()
            gated = not self.gate.is_set()
            if gated:
                self.held += 1
        if gated:  # hold it: neither counted nor answered, closed once the gate opens
            self.gate.wait(self.max_hold)
            self._leave(h)
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        with self.lock:
            self.attempts[text] += 1
            k = self.attempts[text]
        fate = self.fate(text)
        if fate in FAULTS and k == 1:
            with self.lock:
                self.failed[fate] += 1
            if fate == "r429":
                return self._send(h, 429, {"error": {"message": "rate limited"}},
                                  headers=[("Retry-After", self.retry_after)])
            if fate == "r500":
                return self._send(h, 500, {"error": {"message": "internal error"}})
            if fate == "timeout":
                return self._wait_hangup(h, self.max_hold)
            if fate == "drop":
                self._leave(h)
                h.send_response(200)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", "5000")
                h.end_headers()
                h.wfile.write(b'{"choices": [{"te')
                h.wfile.flush()
                h.connection.shutdown(socket.SHUT_RDWR)
                h.close_connection = True
                return
            if fate == "badjson":
                return self._send(h, 200, raw=b'{"choices": [ {"text": " positive", ')
        with self.lock:
            self.scored[text] += 1
        want_lp = bool(req.get("logprobs"))
        if fate == "garbage":
            return self._send(h, 200, self.reply(chat, " banana", None))
        pos = _h(text) % 2 == 0
        tops = [(" positive", -0.1), (" negative", -2.5)] if pos else [(" negative", -0.2), (" positive", -1.8)]
        # a text-dependent margin, so scores differ between texts
        tops[0] = (tops[0][0], tops[0][1] - (_h(text) % 97) / 1000)
        return self._send(h, 200, self.reply(chat, tops[0][0], tops if want_lp else None))

    @staticmethod
    def reply(chat, answer, tops):
        if chat:
            lp = None
            if tops is not None:
                lp = {"content": [{"token": answer, "logprob": tops[0][1],
                                   "top_logprobs": [{"token": t, "logprob": v} for t, v in tops]}]}
            return {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "logprobs": lp,
                                 "finish_reason": "stop"}]}
        lp = None if tops is None else {"tokens": [answer], "token_logprobs": [tops[0][1]],
                                        "top_logprobs": [dict(tops)]}
        return {"choices": [{"index": 0, "text": answer, "logprobs": lp, "finish_reason": "stop"}]}


if __name__ == "__main__":  # pragma: no cover - manual use
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--fail", type=float, default=0.1)
    ap.add_argument("--garbage", type=float, default=0.0)
    a = ap.parse_args()
    s = ScriptedServer(fail=a.fail, garbage=a.garbage)
    print(s.url, flush=True)
    try:
        while True:
            time.sleep(5)
            print(json.dumps(s.stats()), flush=True)
    except KeyboardInterrupt:
        s.close()
