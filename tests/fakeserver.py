"""The tests' fake OpenAI-compatible server on loopback (:class:`FakeOpenAIServer`), in two scripts:
:class:`ScriptedServer` (fates by a hash of the text; fault, security and load tests, and the load benchmark) and
:class:`NamedFateServer` (fates named by the text's first word; the client's protocol tests).

In :class:`ScriptedServer`, every text under classification (the prompt's last ``Text: ...``) gets a deterministic *fate* from a hash of the
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
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TEXT_RE = re.compile(r"Text: (.*)\nLabel:\s*$", re.S)
FAULTS = ("r429", "r500", "timeout", "drop", "badjson")


def text_of(prompt: str) -> str:
    m = TEXT_RE.search("Text: " + prompt.rsplit("Text: ", 1)[-1])
    return m.group(1) if m else ""


def _h(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big")


class FakeOpenAIServer:
    """The HTTP side of a fake OpenAI-compatible server: a threaded loopback server at ``url`` (``.../v1``) whose
    POSTs go to :meth:`_handle` (a subclass's script); requests in flight, paths, hosts and ``Authorization``
    headers are counted. Replies are built by :meth:`reply` (chat or completions, with or without logprobs)."""

    def __init__(self, *, key: str | None = None):
        self.key = key
        self.lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0
        self.hosts: Counter = Counter()
        self.paths: Counter = Counter()
        self.auth: Counter = Counter()
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

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()

    def _read(self, h) -> tuple[dict, bool, str]:
        """The request's JSON body, whether it is a chat request, and the text under classification."""
        n = int(h.headers.get("Content-Length", 0))
        req = json.loads(h.rfile.read(n))
        self._enter(h)
        chat = h.path.endswith("/chat/completions")
        with self.lock:
            self.paths[h.path] += 1
            self.hosts[h.headers.get("Host")] += 1
            self.auth[h.headers.get("Authorization")] += 1
        prompt = req["messages"][-1]["content"] if chat else req["prompt"]
        return req, chat, text_of(prompt)

    def _handle(self, h) -> None:  # pragma: no cover - every server has its script
        raise NotImplementedError

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

    def _drop(self, h) -> None:
        """Headers of a 200 sent, the body cut short, the connection shut."""
        self._leave(h)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", "5000")
        h.end_headers()
        h.wfile.write(b'{"choices": [{"te')
        h.wfile.flush()
        h.connection.shutdown(socket.SHUT_RDWR)
        h.close_connection = True

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


class ScriptedServer(FakeOpenAIServer):
    """``fail``: share of texts whose first attempt fails (split evenly over ``faults``); ``garbage``: share that
    answer a non-label word.  ``gate_after``: once that many texts are scored, hold every further request
    (unanswered, uncounted) until :meth:`release_gate`; held requests are then closed without an answer."""

    def __init__(self, *, fail: float = 0.1, garbage: float = 0.0, faults=FAULTS, key: str | None = None,
                 retry_after: str = "0.05", gate_after: int | None = None, max_hold: float = 30.0,
                 redirect_to: str | None = None):
        self.fail, self.garbage, self.faults = fail, garbage, tuple(faults)
        self.retry_after, self.gate_after, self.max_hold = retry_after, gate_after, max_hold
        self.redirect_to = redirect_to  # answer every request with a 307 to this URL
        self.attempts: Counter = Counter()   # requests per text
        self.scored: Counter = Counter()     # answers a client may store, per text
        self.failed: Counter = Counter()     # injected failures, per fate
        self.held = 0
        self.gate = threading.Event()
        self.gate.set()
        self.gate_closed = threading.Event()
        super().__init__(key=key)

    # ------------------------------------------------------------------ bookkeeping
    def fate(self, text: str) -> str:
        u = (_h(text) % 10_000) / 10_000
        if u < self.fail and self.faults:
            return self.faults[int(u / self.fail * len(self.faults)) % len(self.faults)]
        if u >= 1.0 - self.garbage:  # the top of the range: the same texts whatever ``fail`` is
            return "garbage"
        return "ok"

    def release_gate(self) -> None:
        self.gate_after = None
        self.gate.set()

    def close(self) -> None:
        self.release_gate()
        super().close()

    def stats(self) -> dict:
        with self.lock:
            return {"texts": len(self.attempts), "requests": sum(self.attempts.values()),
                    "scored": sum(self.scored.values()), "failed": dict(self.failed),
                    "max_inflight": self.max_inflight, "held": self.held}

    # ------------------------------------------------------------------ replies
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
        req, chat, text = self._read(h)
        if self.redirect_to:
            return self._send(h, 307, {"error": {"message": "moved"}},
                              headers=[("Location", self.redirect_to + h.path.split("/v1", 1)[-1])])
        if self.key is not None and h.headers.get("Authorization") != f"Bearer {self.key}":
            return self._send(h, 401, {"error": {"message": "Incorrect API key provided"}})
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
                return self._drop(h)
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


class NamedFateServer(FakeOpenAIServer):
    """Behaviour per text, named by how the text (the prompt's last ``Text: ...``) starts:

    ``pos*``/``neg*`` logprobs favouring that word; ``onlypos*`` top list without the negative word;
    ``plainpos*``/``plainneg*`` answer text without logprobs; ``garbage*`` answer 'banana' (no logprobs);
    ``lpgarbage*`` logprobs without either word; ``ratelimit*`` first a 429 with Retry-After;
    ``err500*`` two 500s first; ``slow*`` first reply after 1.0 s; ``drop*`` connection dropped mid-body first;
    ``badjson*`` malformed JSON first; ``always500*`` always 500. Only ``models`` are served; ``hits`` and
    ``times`` record the requests per text, ``auth_headers`` every ``Authorization`` header in order.
    """

    def __init__(self, key: str | None = None, models=("tiny",), delay: float = 0.0):
        self.models, self.delay = set(models), delay
        self.hits: Counter = Counter()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.auth_headers: list[str | None] = []
        super().__init__(key=key)

    def _handle(self, h) -> None:
        req, chat, text = self._read(h)
        self.auth_headers.append(h.headers.get("Authorization"))
        if self.key is not None and h.headers.get("Authorization") != f"Bearer {self.key}":
            return self._send(h, 401, {"error": {"message": "Incorrect API key provided", "type": "auth"}})
        if req.get("model") not in self.models:
            return self._send(h, 404, {"error": {"message": f"The model `{req.get('model')}` does not exist"}})
        with self.lock:
            self.hits[text] += 1
            k = self.hits[text]
            self.times[text].append(time.monotonic())
        if self.delay:
            time.sleep(self.delay)
        if text.startswith("always500"):
            return self._send(h, 500, {"error": {"message": "boom"}})
        if text.startswith("ratelimit") and k == 1:
            return self._send(h, 429, {"error": {"message": "slow down"}}, headers=[("Retry-After", "0.3")])
        if text.startswith("err500") and k <= 2:
            return self._send(h, 500 if k == 1 else 503, {"error": {"message": "server error"}})
        if text.startswith("slow") and k == 1:
            time.sleep(1.0)
        if text.startswith("drop") and k == 1:
            return self._drop(h)
        if text.startswith("badjson") and k == 1:
            return self._send(h, 200, raw=b'{"choices": [ {"text": " positive", ')
        want_lp = bool(req.get("logprobs"))
        if text.startswith(("plainpos", "plainneg", "garbage")):
            answer = {"plainpos": " positive", "plainneg": "Negative.", "garbage": " banana"}[
                re.match(r"(plainpos|plainneg|garbage)", text).group(1)]
            return self._send(h, 200, self.reply(chat, answer, None))
        if text.startswith("lpgarbage"):
            tops = [(" banana", -0.2), (" apple", -1.9)]
            return self._send(h, 200, self.reply(chat, " banana", tops if want_lp else None))
        if text.startswith("onlypos"):
            tops = [(" positive", -0.5), (" maybe", -1.5), (" so", -3.0)]
            return self._send(h, 200, self.reply(chat, " positive", tops if want_lp else None))
        pos = not text.startswith("neg")
        tops = [(" positive", -0.1), (" negative", -2.5), ("Positive", -4.0)] if pos else \
            [(" negative", -0.2), (" positive", -1.8), (" neutral", -5.0)]
        return self._send(h, 200, self.reply(chat, tops[0][0], tops if want_lp else None))


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
