"""What a user meets against a real server, reproduced with httpx's mock transport: a deterministic error is not
retried blindly (chat -> completions switch, or a stop with the fix), an unknown model id lists the served ids,
``openai:auto``, the one-line notices (score kind, resuming) and the progress lines when stderr is not a terminal.

The replies mimic ``transformers serve`` 5.24 serving a base model (seen on 2026-11-29): ``/v1/chat/completions``
answers ``500 Internal Server Error`` in plain text (no chat template), ``/v1/completions`` answers without
``logprobs``, a wrong model id gets ``400 {"detail": "Server is pinned to '...'; requested '...'."}``.
"""

from __future__ import annotations

import json
import logging

import httpx
import pandas as pd
import pytest

from silr.annotate.prompts import ShotPlan, load_prompt
from silr.annotate.server import REPEATS_BEFORE_GIVING_UP, OpenAICompatibleAnnotator
from silr.annotate.types import AnnotationError

MODEL = "/models/gemma-3-270m"


class TransformersServeLike:
    """A transport answering like ``transformers serve`` pinned to one base model."""

    def __init__(self, models=(MODEL,), completions_ok=True, fail_after_ok: int | None = None):
        self.models, self.completions_ok, self.fail_after_ok = list(models), completions_ok, fail_after_ok
        self.calls: list[str] = []
        self.n_ok = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(f"{request.method} {path}")
        if request.method == "GET" and path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})
        body = json.loads(request.content)
        if body.get("model") not in self.models:
            return httpx.Response(400, json={"detail": f"Server is pinned to '{self.models[0]}'; requested "
                                                       f"'{body.get('model')}'."})
        if path.endswith("/chat/completions"):
            return httpx.Response(500, text="Internal Server Error")
        if not self.completions_ok:
            return httpx.Response(500, text="Internal Server Error")
        if self.fail_after_ok is not None and self.n_ok >= self.fail_after_ok and self.n_ok < self.fail_after_ok + 2:
            self.n_ok += 1
            return httpx.Response(503, json={"error": {"message": "busy"}})
        self.n_ok += 1
        word = " positive" if "good" in body["prompt"].rsplit("Text:", 1)[-1] else " negative"
        return httpx.Response(200, json={"choices": [{"index": 0, "text": word, "finish_reason": "length"}]})


def _prompt():
    return ShotPlan(load_prompt("generic").with_updates(positive=" positive", negative=" negative"), shots=0).main


def _ann(transport, model=MODEL, **kw):
    return OpenAICompatibleAnnotator(model, "http://127.0.0.1:9/v1", api_key="k", backoff=0.001,
                                     transport=httpx.MockTransport(transport), **kw)


def test_chat_500_on_a_base_model_switches_to_completions_with_a_notice(caplog):
    srv = TransformersServeLike()
    ann = _ann(srv, concurrency=1)
    with caplog.at_level(logging.WARNING, logger="silr"):
        res = dict(ann.score(["a good film", "a dull film"], _prompt()))
    assert res[0].score == 1.0 and res[1].score == -1.0
    assert ann.api == "completions"
    chat_calls = [c for c in srv.calls if c.endswith("/chat/completions")]
    assert len(chat_calls) == REPEATS_BEFORE_GIVING_UP  # not 7 blind retries
    switched = [n for n in ann.notices if "switched to --api completions" in n]
    assert len(switched) == 1 and "/v1/chat/completions" in switched[0] and "HTTP 500" in switched[0]
    # the scores are parsed answers: said once, with what it means for the threshold
    parsed = [n for n in ann.notices if "parsed answers" in n]
    assert len(parsed) == 1 and "threshold has nothing to tune" in parsed[0]
    assert any("switched to --api completions" in r.getMessage() for r in caplog.records)


def test_deterministic_error_stops_with_endpoint_and_server_text():
    srv = TransformersServeLike(completions_ok=False)
    ann = _ann(srv, api="completions", max_retries=6)
    with pytest.raises(AnnotationError) as e:
        list(ann.score(["a good film"], _prompt()))
    msg = str(e.value)
    assert f"failed {REPEATS_BEFORE_GIVING_UP} times in a row with the same error" in msg
    assert "http://127.0.0.1:9/v1/completions" in msg and "Internal Server Error" in msg
    assert "no request has succeeded" in msg
    assert len([c for c in srv.calls if c.startswith("POST")]) == REPEATS_BEFORE_GIVING_UP


def test_chat_and_completions_both_failing_reports_both():
    srv = TransformersServeLike(completions_ok=False)
    with pytest.raises(AnnotationError, match=r"chat/completions.*and http://127.0.0.1:9/v1/completions failed too"):
        list(_ann(srv, concurrency=1).score(["a good film"], _prompt()))


def test_passing_errors_after_a_success_are_still_retried():
    srv = TransformersServeLike(fail_after_ok=1)
    ann = _ann(srv, api="completions", concurrency=1)
    res = dict(ann.score(["a good film", "a dull film", "good again"], _prompt()))
    assert [res[i].score for i in range(3)] == [1.0, -1.0, 1.0]
    assert ann.stats["retries"] == 2


def test_unknown_model_lists_the_served_ids():
    srv = TransformersServeLike()
    with pytest.raises(AnnotationError) as e:
        list(_ann(srv, model="gemma", api="completions").score(["a good film"], _prompt()))
    msg = str(e.value)
    assert "model 'gemma' unknown" in msg and f"the server offers '{MODEL}'" in msg
    assert f"--model openai:{MODEL}" in msg and "openai:auto" in msg
    assert "Server is pinned" in msg  # the server's own words


def test_openai_auto_takes_the_only_model_and_refuses_a_choice():
    ann = _ann(TransformersServeLike(), model="auto", api="completions")
    assert ann.model == MODEL and ann.model_id.startswith(f"openai:{MODEL}@")
    assert dict(ann.score(["a good film"], _prompt()))[0].score == 1.0
    with pytest.raises(AnnotationError, match=r"exactly one model.*'a', 'b'"):
        _ann(TransformersServeLike(models=("a", "b")), model="auto")


def test_logprob_scores_are_announced_as_graded():
    def lp(request):
        if request.method == "GET":
            return httpx.Response(404)
        tops = {" positive": -0.2, " negative": -1.9}
        return httpx.Response(200, json={"choices": [{"text": " positive", "logprobs": {
            "tokens": [" positive"], "token_logprobs": [-0.2], "top_logprobs": [tops]}}]})

    ann = _ann(lp, api="completions")
    assert dict(ann.score(["x"], _prompt()))[0].score == pytest.approx(1.7)
    assert [n for n in ann.notices if "log-probabilities of the label words" in n]


def test_resuming_is_said_with_the_cached_count(tmp_path, caplog):
    from silr.annotate.run import annotate_frame

    srv = TransformersServeLike()
    texts = [f"good text {i}" for i in range(6)]
    cache = tmp_path / "c.sqlite"
    annotate_frame(pd.DataFrame({"text": texts[:4]}), "text", _ann(srv, api="completions"), _prompt().spec,
                   cache=cache, progress=False)
    with caplog.at_level(logging.WARNING, logger="silr"):
        annotate_frame(pd.DataFrame({"text": texts}), "text", _ann(srv, api="completions"), _prompt().spec,
                       cache=cache, progress=False)
    msgs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resuming")]
    assert msgs == ["resuming: 4 of 6 texts are already scored in the cache (same model and prompt); scoring the "
                    "other 2"]


def test_progress_lines_when_stderr_is_not_a_terminal(capsys):
    from silr.progress import _LineProgress

    now = [0.0]
    p = _LineProgress("Scoring", 100, 30.0, lambda: "3 retries, 1 time-outs so far", clock=lambda: now[0])
    p.start()
    for _ in range(10):  # 10 items every 10 s: a line every 30 s
        now[0] += 10.0
        p.advance(10)
    p.finish()
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "Scoring: 100 items ..."
    assert lines[1] == "Scoring: 30/100 (30%), 1.00/s, ETA 1m10s, 3 retries, 1 time-outs so far"
    assert len(lines) == 1 + 3 + 1  # at 30, 60, 90 s; not at 100 (the end line says it)
    assert lines[-1] == "Scoring: done, 100 in 1m40s (1.00/s), 3 retries, 1 time-outs so far"
