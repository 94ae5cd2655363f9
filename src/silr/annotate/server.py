"""Annotate through an OpenAI-compatible server: vLLM, Ollama, llama.cpp server, LM Studio, OpenAI.

* Endpoint, model and key come from the arguments or the environment (``SILR_OPENAI_BASE_URL`` /
  ``OPENAI_BASE_URL``, ``SILR_OPENAI_API_KEY`` / ``OPENAI_API_KEY``).  Only that endpoint is contacted
  (no redirects are followed, proxy variables are ignored).
* ``api="chat"`` (default) uses ``/chat/completions``; ``api="completions"`` uses ``/completions``, the
  better choice for base models served by vLLM / llama.cpp.
* When the server returns log-probabilities, score = logprob(positive word) - logprob(negative word) at the
  answer's first token (variants such as ``"Positive"``/``" positive"`` are pooled); a word missing from the
  returned top list gets the smallest returned log-probability minus ``missing_margin``.  Otherwise the
  answer is parsed strictly: exactly one of the label words gives +1/-1, anything else ABSTAINS (score
  None) — it is never guessed.
* Requests run on ``concurrency`` threads.  Timeouts, connection errors, malformed replies, 429 (honouring
  ``Retry-After``) and 5xx are retried with exponential backoff and jitter; 401/403 (wrong key) and 404
  (unknown model / wrong URL) stop the run at once with a clear message.  An error that repeats identically
  (same status, same server text) before any request has succeeded is not retried blindly: with
  ``api="chat"`` the completions endpoint is tried once (base models have no chat template, and servers such
  as ``transformers serve`` answer 500 for them) and used from then on with a notice; otherwise the run stops
  with the endpoint, the server's own error text and the fix.  A model id the server does not know is
  answered with the ids it offers (``GET /models``); ``model="auto"`` takes the only one.
* The API key is sent only in the ``Authorization`` header; it is never part of the cache key, the records,
  logs or error messages.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from .replies import logprob_score, parse_answer, parse_retry_after, reply_positions  # noqa: F401 (parse_answer re-exported)
from .types import AnnotationError, ScoreResult

log = logging.getLogger(__name__)

OPENAI_URL = "https://api.openai.com/v1"


class _Fatal(AnnotationError):
    pass


class _Retryable(Exception):
    def __init__(self, why: str, wait: float | None = None):
        super().__init__(why)
        self.why, self.wait = why, wait


class _LogprobsRejected(Exception):
    pass


class _HTTPError(_Retryable):
    """A retryable HTTP status (429, 408, 5xx), with the server's own error text."""

    def __init__(self, code: int, detail: str, wait: float | None = None):
        super().__init__(f"HTTP {code}{detail}", wait)
        self.code, self.detail = code, detail


#: identical errors in a row, before any success, after which an error is taken as deterministic
REPEATS_BEFORE_GIVING_UP = 3


def _env(*names: str) -> str | None:
    for n in names:
        v = os.environ.get(n)
        if v:
            return v
    return None


def public_url(url: str) -> str:
    """The URL without credentials, query or fragment (safe for cache keys, records and messages)."""
    p = urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host = f"{host}:{p.port}"
    return urlunsplit((p.scheme, host, p.path.rstrip("/"), "", ""))


class OpenAICompatibleAnnotator:
    """Scores texts with a model behind an OpenAI-compatible HTTP API (see the module docstring)."""

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None, *,
                 api: str = "chat", concurrency: int = 4, timeout: float = 60.0, max_retries: int = 6,
                 backoff: float = 0.5, max_backoff: float = 30.0, max_retry_after: float = 120.0,
                 logprobs: bool = True, top_logprobs: int = 5, missing_margin: float = 1.0,
                 max_answer_tokens: int = 5, transport: httpx.BaseTransport | None = None):
        if not model:
            raise AnnotationError("no model name given for the server (use --model openai:MODEL)")
        if api not in ("chat", "completions"):
            raise ValueError("api must be 'chat' or 'completions'")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self._api_key = api_key if api_key is not None else _env("SILR_OPENAI_API_KEY", "OPENAI_API_KEY")
        url = base_url or _env("SILR_OPENAI_BASE_URL", "OPENAI_BASE_URL")
        if not url:
            if not self._api_key:
                raise AnnotationError(
                    "no server given: pass --base-url (e.g. http://localhost:8000/v1 for vLLM, "
                    "http://localhost:11434/v1 for Ollama) or set SILR_OPENAI_BASE_URL"
                )
            url = OPENAI_URL
        if not re.match(r"^https?://", url):
            raise AnnotationError(f"base URL must start with http:// or https://, got {public_url(url)!r}")
        self.base_url = url.rstrip("/")
        self.public_base_url = public_url(self.base_url)
        self.model = model
        self.model_id = f"openai:{model}@{self.public_base_url}"
        self.api = api
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff, self.max_backoff, self.max_retry_after = float(backoff), float(max_backoff), float(max_retry_after)
        self.use_logprobs = bool(logprobs)
        self.top_logprobs = int(top_logprobs)
        self.missing_margin = float(missing_margin)
        self.max_answer_tokens = int(max_answer_tokens)
        self._client = httpx.Client(timeout=httpx.Timeout(self.timeout), follow_redirects=False, trust_env=False,
                                    transport=transport,
                                    limits=httpx.Limits(max_connections=self.concurrency,
                                                        max_keepalive_connections=self.concurrency))
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "timeouts": 0, "logprob_scores": 0, "answer_scores": 0,
                      "abstained": 0, "truncated": 0}
        self.n_truncated = 0
        self._n_ok = 0  # successful replies so far
        self._repeat: tuple[str, int] = ("", 0)  # (last error signature, times in a row)
        self._api_switched = False
        self._kind_noticed = False
        self.notices: list[str] = []  # one-line notices said during the run (also logged)
        if model == "auto":
            self.model = self._auto_model()
            self.model_id = f"openai:{self.model}@{self.public_base_url}"
            self._notice(f"--model openai:auto: the server offers one model, {self.model!r}; using it")

    # ------------------------------------------------------------------ notices and model ids
    def _notice(self, msg: str) -> None:
        self.notices.append(msg)
        log.warning("%s", msg)

    def served_models(self) -> list[str] | None:
        """The model ids the server lists at ``GET /models`` (None when it cannot say)."""
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            r = self._client.get(self.base_url + "/models", headers=headers)
            data = r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return None
        return [str(d["id"]) for d in items if isinstance(d, dict) and d.get("id") is not None]

    def _auto_model(self) -> str:
        ids = self.served_models()
        if ids is None:
            raise AnnotationError(f"--model openai:auto: server {self.public_base_url} did not list its models at "
                                  f"{self.public_base_url}/models; pass the model id with --model openai:ID")
        if len(ids) != 1:
            listed = ", ".join(repr(i) for i in ids) or "none"
            raise AnnotationError(f"--model openai:auto needs a server with exactly one model; "
                                  f"{self.public_base_url} offers {listed}: pass one with --model openai:ID")
        return ids[0]

    def _unknown_model(self, code: int, detail: str) -> _Fatal:
        ids = self.served_models()
        offered = ""
        if ids:
            offered = ("; the server offers " + ", ".join(repr(i) for i in ids[:10])
                       + (f" (and {len(ids) - 10} more)" if len(ids) > 10 else "")
                       + (": use --model openai:" + ids[0] + (" or --model openai:auto" if len(ids) == 1 else "")))
        return _Fatal(f"model '{self.model}' unknown to server {self.public_base_url} (HTTP {code}){detail}{offered}"
                      "; check --model (the id as the server's /v1/models lists it), and that --base-url ends "
                      "with /v1")

    # ------------------------------------------------------------------ identity
    @property
    def settings_id(self) -> str:
        return (f"api={self.api};logprobs={self.use_logprobs};top={self.top_logprobs};"
                f"margin={self.missing_margin};max_tokens={self.max_answer_tokens}")

    def describe(self) -> dict[str, Any]:
        return {"kind": "openai-compatible", "model": self.model, "base_url": self.public_base_url, "api": self.api,
                "concurrency": self.concurrency, "api_key_set": bool(self._api_key)}

    def _safe(self, s: str) -> str:
        if self._api_key:
            s = s.replace(self._api_key, "***")
        return s.replace(self.base_url, self.public_base_url)

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ one request
    def _payload(self, prompt_text: str, positive: str, negative: str, logprobs: bool) -> tuple[str, dict]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_answer_tokens, "temperature": 0}
        if self.api == "completions":
            body.update(prompt=prompt_text, stop=["\n"])
            if logprobs:
                body["logprobs"] = self.top_logprobs
            return "/completions", body
        system = (f"Continue the pattern. Answer with exactly one word: {positive.strip()} or {negative.strip()}.")
        body["messages"] = [{"role": "system", "content": system}, {"role": "user", "content": prompt_text}]
        if logprobs:
            body.update(logprobs=True, top_logprobs=self.top_logprobs)
        return "/chat/completions", body

    def _post(self, path: str, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        try:
            r = self._client.post(self.base_url + path, json=body, headers=headers)
        except httpx.TimeoutException as e:
            raise _Retryable(f"timeout after {self.timeout:g} s ({type(e).__name__})") from None
        except httpx.TransportError as e:
            raise _Retryable(f"connection error ({type(e).__name__})") from None
        code = r.status_code
        if code == 200:
            try:
                data = r.json()
            except ValueError:
                raise _Retryable("malformed JSON in the reply") from None
            if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
                raise _Retryable("reply without 'choices'")
            return data
        detail = self._error_detail(r)
        if code in (401, 403):
            raise _Fatal(f"server {self.public_base_url} refused the request (HTTP {code}): wrong or missing API key"
                         f" (set --api-key or SILR_OPENAI_API_KEY){detail}")
        if code == 404:
            raise self._unknown_model(code, detail)
        if code == 429 or code >= 500 or code == 408:
            raise _HTTPError(code, detail, parse_retry_after(r.headers.get("Retry-After")))
        if code in (400, 422) and ("model" in detail.lower() or "pinned" in detail.lower()):
            ids = self.served_models()
            if ids is not None and self.model not in ids:
                raise self._unknown_model(code, detail)
        if code in (400, 422) and ("logprobs" in body or "top_logprobs" in body):
            raise _LogprobsRejected(detail)
        raise _Fatal(f"server {self.public_base_url} answered HTTP {code} at {self.public_base_url}{path}{detail}")

    def _error_detail(self, r: httpx.Response) -> str:
        try:
            data = r.json()
            msg = data.get("error") or data.get("detail") or data.get("message") or ""  # OpenAI / FastAPI / other
            msg = msg.get("message", "") if isinstance(msg, dict) else str(msg)
        except Exception:
            msg = r.text[:200]
        msg = " ".join(str(msg).split())[:200]
        return f": {self._safe(msg)}" if msg else ""

    def request_words(self, prompt_text: str, words) -> dict:
        """One request (with :meth:`_request`'s retries) whose system message names two or more ``words``
        ("a, b or c"); the decoded reply. The K-class annotation's (silr.multiclass.server) way in."""
        return self._request(prompt_text, ", ".join(words[:-1]), words[-1])

    def _request(self, prompt_text: str, positive: str, negative: str) -> dict:
        attempt = 0
        while True:
            path, body = self._payload(prompt_text, positive, negative, self.use_logprobs)
            with self._lock:
                self.stats["requests"] += 1
            try:
                data = self._post(path, body)
                with self._lock:
                    self._n_ok += 1
                    self._repeat = ("", 0)
                return data
            except _LogprobsRejected as e:
                if self.use_logprobs:
                    self._notice(f"server {self.public_base_url} rejected the logprobs request{e}; parsing plain "
                                 "answers instead (scores become +1/-1)")
                self.use_logprobs = False
                continue
            except _Retryable as e:
                if isinstance(e, _HTTPError):
                    self._check_repeated(e, path, prompt_text, positive, negative)
                elif e.why.startswith("timeout"):
                    with self._lock:
                        self.stats["timeouts"] += 1
                attempt += 1
                if attempt > self.max_retries:
                    raise AnnotationError(
                        f"server {self.public_base_url} failed {attempt} times, giving up: {e.why}"
                    ) from None
                if e.wait is not None:
                    delay = min(e.wait, self.max_retry_after)
                else:
                    delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                    delay *= 0.5 + random.random()  # jitter
                with self._lock:
                    self.stats["retries"] += 1
                log.info("retrying in %.2f s (%s)", delay, e.why)
                time.sleep(delay)

    def _check_repeated(self, e: _HTTPError, path: str, prompt_text: str, positive: str, negative: str) -> None:
        """Stop (or switch API) when an HTTP error repeats identically before any request has succeeded."""
        if e.code == 429:
            return  # rate limits are retried as the server asks
        with self._lock:
            sig = f"{path}|{e.code}|{e.detail}"
            n = self._repeat[1] + 1 if self._repeat[0] == sig else 1
            self._repeat = (sig, n)
            deterministic = self._n_ok == 0 and n >= REPEATS_BEFORE_GIVING_UP
            if not deterministic:
                return
            if path.endswith("/chat/completions") and self._api_switched and self.api == "completions":
                return  # another request is switching (or has switched) the API: retry on the new endpoint
            if self.api == "chat" and not self._api_switched:
                self._api_switched = True
                self.api = "completions"  # requests retried from now on go to the completions endpoint
                try_switch = True
            else:
                try_switch = False
        endpoint = f"{self.public_base_url}{path}"
        if try_switch:
            cpath, cbody = self._payload(prompt_text, positive, negative, self.use_logprobs)
            try:
                for probe in range(REPEATS_BEFORE_GIVING_UP):
                    try:
                        self._post(cpath, cbody)
                        break
                    except _HTTPError:
                        raise
                    except _Retryable:  # a dropped connection or time-out says nothing about the endpoint
                        if probe == REPEATS_BEFORE_GIVING_UP - 1:
                            raise
                        time.sleep(min(self.max_backoff, self.backoff * 2 ** probe))
            except AnnotationError:
                raise
            except Exception as e2:  # the completions endpoint fails too: report both
                self.api = "chat"
                raise _Fatal(
                    f"server {self.public_base_url} failed {n} times in a row with the same error at {endpoint} "
                    f"({e.why}), and {self.public_base_url}{cpath} failed too ({e2}); no request has succeeded, "
                    "so this is not a passing fault: check the server's own log") from None
            self._notice(
                f"{endpoint} failed {n} times in a row with the same error ({e.why}) and {self.public_base_url}{cpath} "
                "works: switched to --api completions (a base model without a chat template cannot serve chat "
                "requests; pass --api completions to skip this check)")
            with self._lock:
                self._repeat = ("", 0)
            return
        hint = ("; the server cannot apply a chat template to this model: use --api completions"
                if "chat" in path and "template" in e.detail.lower() else "; see the server's own log")
        raise _Fatal(f"server {self.public_base_url} failed {n} times in a row with the same error at {endpoint}: "
                     f"{e.why}; no request has succeeded, so this is not a passing fault{hint}")

    # ------------------------------------------------------------------ parsing
    def _score_one(self, prompt_text: str, positive: str, negative: str, truncated: bool) -> ScoreResult:
        data = self._request(prompt_text, positive, negative)
        choice = data["choices"][0] if isinstance(data["choices"][0], dict) else {}
        s = logprob_score(reply_positions(choice), positive, negative, self.missing_margin)
        kind = "logprob_scores"
        if s is None:
            text = choice.get("text")
            if text is None and isinstance(choice.get("message"), dict):
                text = choice["message"].get("content")
            lab = parse_answer(text if isinstance(text, str) else None, positive, negative)
            s = None if lab is None else (1.0 if lab == 1 else -1.0)
            kind = "answer_scores"
        with self._lock:
            self.stats["abstained" if s is None else kind] += 1
            first = s is not None and not self._kind_noticed
            if first:
                self._kind_noticed = True
        if first:
            self._notice(
                f"scores from {self.public_base_url}: log-probabilities of the label words (graded; the threshold "
                "can be tuned)" if kind == "logprob_scores" else
                f"scores from {self.public_base_url}: parsed answers (+1/-1), the server returned no "
                "log-probabilities" + (" (logprobs were requested)" if self.use_logprobs else "")
                + ": the threshold has nothing to tune and the LLM's score carries no confidence; servers that "
                "return log-probabilities (vLLM, llama.cpp server, OpenAI) give graded scores")
        return ScoreResult(s, s is None, truncated)

    def status(self) -> str:
        """One line for progress reports: retries and time-outs so far."""
        st = self.stats
        return f"{st['retries']} retries, {st['timeouts']} time-outs so far"

    # ------------------------------------------------------------------ batch
    def score(self, texts: Sequence[str], prompt: Any) -> Iterator[tuple[int, ScoreResult]]:
        """Score ``texts`` with at most ``concurrency`` requests in flight; yields results as they arrive."""
        jobs = []
        for t in texts:
            clipped, cut = prompt.clip(t)
            jobs.append((prompt.prefix + prompt.suffix(clipped), cut))
        n_cut = sum(c for _, c in jobs)
        self.n_truncated += n_cut
        self.stats["truncated"] += n_cut
        if n_cut:
            log.info("%d of %d texts were cut to max_text_chars=%d", n_cut, len(texts), prompt.spec.max_text_chars)
        pending: dict[Future, int] = {}
        it = iter(range(len(jobs)))
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="silr-annotate") as pool:
            try:
                def fill() -> None:
                    while len(pending) < self.concurrency:
                        i = next(it, None)
                        if i is None:
                            return
                        pending[pool.submit(self._score_one, jobs[i][0], prompt.positive, prompt.negative,
                                            jobs[i][1])] = i

                fill()
                while pending:
                    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                    for f in done:
                        i = pending.pop(f)
                        yield i, f.result()
                    fill()
            finally:
                for f in pending:
                    f.cancel()
