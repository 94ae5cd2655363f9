"""OpenAICompatibleAnnotator against a real HTTP server on loopback, speaking the OpenAI completions/chat
protocol with scripted misbehaviour; plus `silr annotate` end to end through that server."""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from fakeserver import NamedFateServer

from silr.annotate.prompts import ShotPlan, load_prompt
from silr.annotate.run import annotate_frame
from silr.annotate.server import OpenAICompatibleAnnotator, parse_answer
from silr.annotate.types import AnnotationError

KEY = "sk-test-SECRET-4f1d9c"
TEXT_RE = re.compile(r"Text: (.*)\nLabel:\s*$", re.S)


@pytest.fixture
def server():
    s = NamedFateServer(key=KEY)
    yield s
    s.close()


def _prompt():
    return ShotPlan(load_prompt("generic").with_updates(positive=" positive", negative=" negative"), shots=0).main


def _ann(server, **kw):
    kw.setdefault("api_key", KEY)
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 0.4)
    return OpenAICompatibleAnnotator("tiny", server.url, **kw)


# ----------------------------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("api", ["chat", "completions"])
def test_logprob_scores_and_answers(server, api):
    ann = _ann(server, api=api)
    texts = ["pos one", "neg two", "onlypos three", "plainpos four", "plainneg five", "garbage six",
             "lpgarbage seven"]
    res = dict(ann.score(texts, _prompt()))
    s = {texts[i]: r for i, r in res.items()}
    # pooled variants " positive" and "Positive": log(e^-0.1 + e^-4.0) - (-2.5)
    import math
    assert s["pos one"].score == pytest.approx(math.log(math.exp(-0.1) + math.exp(-4.0)) + 2.5, abs=1e-9)
    assert s["neg two"].score == pytest.approx(-1.8 - (-0.2))
    # onlypos: the negative word is missing -> min(returned) - margin(1.0) = -4.0
    assert s["onlypos three"].score == pytest.approx(-0.5 - (-3.0 - 1.0))
    assert (s["plainpos four"].score, s["plainneg five"].score) == (1.0, -1.0)
    assert s["garbage six"].abstained and s["garbage six"].score is None
    assert s["lpgarbage seven"].abstained and s["lpgarbage seven"].score is None
    assert all(v == 1 for v in server.hits.values())
    assert ann.stats["abstained"] == 2 and ann.stats["answer_scores"] == 2
    path = "/v1/chat/completions" if api == "chat" else "/v1/completions"
    assert set(server.paths) == {path}
    assert all(a == f"Bearer {KEY}" for a in server.auth_headers)


def test_neg_text_scores_negative(server):
    r = dict(_ann(server).score(["neg x"], _prompt()))[0]
    # the fake favours " negative" (-0.2) over " positive" (-1.8)
    assert r.score == pytest.approx(-1.6)


def test_parse_answer_is_strict():
    assert parse_answer(" Positive.", " positive", " negative") == 1
    assert parse_answer("negative\nmore text", " positive", " negative") == 0
    for bad in ("", None, "positive or negative", "pos", "I think positive", "neutral"):
        assert parse_answer(bad, " positive", " negative") is None


def test_retries_succeed_and_count_requests(server):
    ann = _ann(server, concurrency=4)
    texts = ["ratelimit a", "err500 b", "slow c", "drop d", "badjson e", "pos f"]
    res = dict(ann.score(texts, _prompt()))
    assert all(not r.abstained and r.score > 0 for r in res.values())
    assert server.hits == Counter({"ratelimit a": 2, "err500 b": 3, "slow c": 2, "drop d": 2, "badjson e": 2,
                                   "pos f": 1})
    # Retry-After (0.3 s) was honoured although the backoff base is 0.01 s
    t = server.times["ratelimit a"]
    assert t[1] - t[0] >= 0.28
    assert ann.stats["retries"] == 1 + 2 + 1 + 1 + 1


def test_gives_up_after_max_retries_with_clear_error(server):
    ann = _ann(server, max_retries=2, api="completions")
    with pytest.raises(AnnotationError, match=r"failed 3 times.*HTTP 500"):
        list(ann.score(["always500 x"], _prompt()))
    assert server.hits["always500 x"] == 3
    # with the chat API, the completions endpoint is tried once before giving up (it fails here too)
    server.hits.clear()
    with pytest.raises(AnnotationError, match=r"failed 3 times in a row.*completions failed too"):
        list(_ann(server, max_retries=6).score(["always500 x"], _prompt()))
    assert server.hits["always500 x"] == 3 + 1


def test_concurrency_bound(server):
    server.delay = 0.05
    ann = _ann(server, concurrency=3)
    texts = [f"pos {i}" for i in range(24)]
    res = dict(ann.score(texts, _prompt()))
    assert len(res) == 24
    assert server.max_inflight <= 3
    assert server.max_inflight >= 2  # requests really overlap


def test_wrong_key_and_unknown_model_fail_fast(server):
    with pytest.raises(AnnotationError, match="wrong or missing API key") as e:
        list(_ann(server, api_key="sk-wrong-key-123").score(["pos a", "pos b"], _prompt()))
    assert "sk-wrong-key-123" not in str(e.value)
    with pytest.raises(AnnotationError, match="model 'nope' unknown to server"):
        list(OpenAICompatibleAnnotator("nope", server.url, api_key=KEY, backoff=0.01).score(["pos a"], _prompt()))
    # no retries on 401/404: at most one request per text that was in flight
    assert sum(server.hits.values()) <= 3


def test_connection_refused_is_clear():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ann = OpenAICompatibleAnnotator("tiny", f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=1, backoff=0.01)
    with pytest.raises(AnnotationError, match="connection error"):
        list(ann.score(["pos a"], _prompt()))


def test_config_from_env_and_key_not_in_ids(monkeypatch, server):
    monkeypatch.setenv("SILR_OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("SILR_OPENAI_API_KEY", KEY)
    ann = OpenAICompatibleAnnotator("tiny", backoff=0.01)
    assert ann.base_url == server.url
    assert dict(ann.score(["pos a"], _prompt()))[0].score > 0
    assert KEY not in ann.model_id + ann.settings_id + json.dumps(ann.describe())
    withcreds = OpenAICompatibleAnnotator("tiny", "http://user:pw@127.0.0.1:1/v1?x=1", api_key=KEY)
    assert "pw" not in withcreds.model_id and withcreds.model_id == "openai:tiny@http://127.0.0.1:1/v1"
    monkeypatch.delenv("SILR_OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("SILR_OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(AnnotationError, match="--base-url"):
        OpenAICompatibleAnnotator("tiny")


# ----------------------------------------------------------------------------------------------- end to end
def _corpus(tmp_path):
    texts = ["pos a", "neg b", "pos a", "garbage c", "ratelimit d", "neg e", "onlypos f", "pos g"]
    df = pd.DataFrame({"id": range(len(texts)), "text": texts})
    lab = pd.DataFrame({"text": ["pos l1", "neg l2", "pos l3", "neg l4", "pos l5", "neg l6"],
                        "label": [1, 0, 1, 0, 1, 0]})
    df.to_csv(tmp_path / "corpus.csv", index=False)
    lab.to_csv(tmp_path / "lab.csv", index=False)
    return df, lab


def test_annotate_frame_through_server_with_cache(server, tmp_path, caplog):
    df, lab = _corpus(tmp_path)
    cache = tmp_path / "cache.sqlite"
    with caplog.at_level(logging.DEBUG):
        out, rec = annotate_frame(df, "text", _ann(server), load_prompt("generic").with_updates(
            positive=" positive", negative=" negative"), labeled=lab, shots=2, cache=cache, progress=False)
    assert list(out.columns) == ["id", "text", "llm_score", "pseudo_label", "abstained"]
    assert out["abstained"].tolist() == [False, False, False, True, False, False, False, False]
    assert pd.isna(out["pseudo_label"].iloc[3]) and pd.isna(out["llm_score"].iloc[3])
    assert out["pseudo_label"].dropna().tolist() == [1, 0, 1, 1, 0, 1, 1]
    assert rec["counts"]["scored"] == 7 + 6 and rec["counts"]["cached"] == 0  # duplicates scored once
    assert rec["threshold"]["method"] == "accuracy" and rec["threshold"]["labeled_accuracy"] == 1.0
    assert server.hits["pos a"] == 1
    # the labeled rows used as shots were scored with other shots: each labeled text requested once
    assert all(server.hits[t] == 1 for t in lab["text"])
    hits_before = sum(server.hits.values())
    out2, rec2 = annotate_frame(df, "text", _ann(server), load_prompt("generic").with_updates(
        positive=" positive", negative=" negative"), labeled=lab, shots=2, cache=cache, progress=False)
    assert sum(server.hits.values()) == hits_before  # a re-run costs nothing
    assert rec2["counts"]["scored"] == 0 and rec2["counts"]["cached"] == 13
    pd.testing.assert_frame_equal(out, out2)
    assert KEY.encode() not in cache.read_bytes()
    for side in tmp_path.glob("cache.sqlite*"):
        assert KEY.encode() not in side.read_bytes()
    assert KEY not in caplog.text
    assert KEY not in json.dumps(rec, default=str)


def test_cli_through_server(server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from silr.cli import app

    _corpus(tmp_path)
    monkeypatch.setenv("SILR_OPENAI_API_KEY", KEY)
    monkeypatch.setenv("SILR_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out.jsonl"
    args = ["annotate", str(tmp_path / "corpus.csv"), "--out", str(out), "--model", "openai:tiny",
            "--base-url", server.url, "--instruction", "Label each text.", "--label-words", "positive,negative",
            "--labeled", str(tmp_path / "lab.csv"), "--shots", "2", "--concurrency", "2", "--quiet"]
    import logging

    lg = logging.getLogger("silr")
    state = (list(lg.handlers), lg.level, lg.propagate)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    # the command's logging set-up (errors only with --quiet) does not outlive it
    assert (list(lg.handlers), lg.level, lg.propagate) == state
    got = pd.read_json(out, lines=True)
    assert {"id", "text", "llm_score", "pseudo_label", "abstained"} <= set(got.columns)
    rec = json.loads(Path(str(out) + ".annotation.json").read_text())
    assert rec["counts"]["abstained"] == 1 and rec["model"]["model"] == "tiny"
    assert rec["prompt"]["label_words"] == {"positive": " positive", "negative": " negative"}
    for f in [out, Path(str(out) + ".annotation.json"), *(tmp_path / "cache").glob("*")]:
        assert KEY.encode() not in f.read_bytes(), f
    assert KEY not in r.output
    # the key given on the command line never shows up either, even in an error
    r = CliRunner().invoke(app, args[:-1] + ["--api-key", "sk-cli-WRONG-777", "--no-cache"])
    assert r.exit_code == 1
    assert "wrong or missing API key" in r.output and "sk-cli-WRONG-777" not in r.output
    # usage error
    r = CliRunner().invoke(app, ["annotate", str(tmp_path / "corpus.csv"), "--out", str(out)])
    assert r.exit_code == 2


def test_cli_failures_are_one_line_without_traceback(server, tmp_path):
    _corpus(tmp_path)
    base = [sys.executable, "-m", "silr.cli", "annotate", str(tmp_path / "corpus.csv"), "--out",
            str(tmp_path / "o.csv"), "--prompt", "sentiment", "--cache-dir", str(tmp_path / "c"), "--quiet"]
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "SILR_OPENAI_API_KEY": KEY}
    r = subprocess.run(base + ["--model", "openai:nope", "--base-url", server.url], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "model 'nope' unknown to server" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(base[:4] + [str(tmp_path / "missing.csv")] + base[5:] + ["--model", "openai:tiny",
                       "--base-url", server.url], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "does not exist" in r.stderr
    assert not (tmp_path / "o.csv").exists()
