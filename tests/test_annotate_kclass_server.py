"""K-class annotation against an OpenAI-compatible server (silr.multiclass.server; `silr annotate --label-words
a,b,c --model openai:NAME --base-url URL`), on the tests' loopback fake server: the K words' log-probabilities
read from the answer, a plain answer when the server gives none, abstention on an answer that names no word, and
the score cache (a re-run sends no request)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fakeserver import FakeOpenAIServer
from silr.annotate.replies import reply_positions, words_logprobs
from silr.multiclass.server import parse_kanswer

WORDS = ["cars", "space", "food"]


class KServer(FakeOpenAIServer):
    """Answers by the text's topic word; ``plain`` in the text: no log-probabilities; ``noise``: a non-word."""

    def __init__(self):
        self.requests = []
        super().__init__()

    def _handle(self, h) -> None:
        n = int(h.headers.get("Content-Length", 0))
        req = json.loads(h.rfile.read(n))
        self._enter(h)
        chat = h.path.endswith("/chat/completions")
        prompt = req["messages"][-1]["content"] if chat else req["prompt"]
        text = prompt.rsplit("Text: ", 1)[-1]
        with self.lock:
            self.requests.append(req)
        topic = next((w for w in WORDS if w in text), None)
        if topic is None or "noise" in text:
            return self._send(h, 200, self.reply(chat, " banana", None))
        tops = [(" " + topic, -0.2)] + [(" " + w.capitalize(), -2.5) for w in WORDS if w != topic] + [(" the", -4.0)]
        return self._send(h, 200, self.reply(chat, " " + topic, None if "plain" in text else tops))


@pytest.fixture()
def server():
    s = KServer()
    yield s
    s.close()


def test_words_logprobs_and_plain_answers():
    choice = {"logprobs": {"content": [{"token": " Space", "logprob": -0.3, "top_logprobs": [
        {"token": " Space", "logprob": -0.3}, {"token": " space", "logprob": -1.0}, {"token": " cars", "logprob": -2.0},
        {"token": " the", "logprob": -5.0}]}]}}
    lp = words_logprobs(reply_positions(choice), WORDS, missing_margin=1.0)
    assert lp[0] == pytest.approx(-2.0) and lp[2] == pytest.approx(-6.0)  # food missing: smallest - 1
    assert lp[1] == pytest.approx(np.logaddexp(-0.3, -1.0))  # case variants pooled
    assert words_logprobs(reply_positions({"logprobs": {"content": [{"token": " banana", "logprob": -0.1,
                                                                      "top_logprobs": []}]}}), WORDS) is None
    assert parse_kanswer(" Food.", WORDS) == 2 and parse_kanswer("banana", WORDS) is None
    assert parse_kanswer(None, WORDS) is None


def test_cli_annotates_k_classes_through_a_server_with_cache(server, tmp_path, monkeypatch):
    from silr.cli import app

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("SILR_OPENAI_API_KEY", raising=False)
    texts = ["a post about cars and engines", "rockets to space", "a recipe, food", "plain words on space",
             "noise only", "more about food"]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "c.csv", index=False)
    args = ["annotate", str(tmp_path / "c.csv"), "--label-words", ",".join(WORDS), "--instruction", "Topic?",
            "--model", "openai:fake", "--base-url", server.url, "--out", str(tmp_path / "o.csv"),
            "--cache-dir", str(tmp_path / "cache"), "-q"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, (r.output, r.exception)
    out = pd.read_csv(tmp_path / "o.csv", keep_default_na=False)
    assert out["llm_label"].tolist() == ["cars", "space", "food", "space", "", "food"]
    P = np.exp(out[[f"llm_logp_{w}" for w in WORDS]].replace("", np.nan).astype(float).to_numpy())
    assert np.allclose(P[[0, 1, 2, 3, 5]].sum(1), 1.0) and np.isnan(P[4]).all()
    assert P[0, 0] > 0.8  # graded: the words' log-probabilities
    assert P[3, 1] == pytest.approx(np.e / (np.e + 2 / np.e))  # a plain answer: +1 / -1, normalised
    rec = json.loads((tmp_path / "o.csv.annotation.json").read_text())
    assert rec["counts"]["by_kind"] == {"logprob_scores": 4, "answer_scores": 1, "abstained": 1, "cached": 0}
    assert rec["counts"]["abstained"] == 1
    req = server.requests[0]
    system = req["messages"][0]["content"]
    assert re.search(r"cars, space or food", system) and req["top_logprobs"] >= len(WORDS)
    n = len(server.requests)
    r = CliRunner().invoke(app, args[:-3] + ["--out", str(tmp_path / "o2.csv"), "-q", "--cache-dir",
                                             str(tmp_path / "cache")])
    assert r.exit_code == 0, (r.output, r.exception)
    assert len(server.requests) == n  # every text (the abstained one too) came from the cache
    assert pd.read_csv(tmp_path / "o2.csv", keep_default_na=False)["llm_label"].tolist() == out["llm_label"].tolist()


def test_kclass_server_options_are_checked(tmp_path):
    from silr.cli import app

    pd.DataFrame({"text": ["x"]}).to_csv(tmp_path / "c.csv", index=False)
    r = CliRunner().invoke(app, ["annotate", str(tmp_path / "c.csv"), "--label-words", "a,b,c", "--base-url",
                                 "http://127.0.0.1:9/v1", "--out", str(tmp_path / "o.csv"), "-q"])
    assert r.exit_code != 0 and "--base-url goes with --model openai:NAME" in r.output
    r = CliRunner().invoke(app, ["annotate", str(tmp_path / "c.csv"), "--label-words", "a,b,c", "--model", "openai:m",
                                 "--base-url", "http://127.0.0.1:9/v1", "--sample", "1",
                                 "--out", str(tmp_path / "o.csv"), "-q"])
    assert r.exit_code != 0 and "--sample is for two label words" in r.output
    for words in ("a,b,c", "yes,no"):  # one check of --api for both paths
        r = CliRunner().invoke(app, ["annotate", str(tmp_path / "c.csv"), "--label-words", words, "--instruction", "Q?",
                                     "--model", "openai:m", "--base-url", "http://127.0.0.1:9/v1", "--api", "rest",
                                     "--out", str(tmp_path / "o.csv"), "-q"])
        assert r.exit_code == 2 and "--api must be chat or completions" in r.output


def _topic_job(tmp_path, url, seed, noise_rows=()) -> tuple[pd.DataFrame, str]:
    """A 90-row topic corpus (the server's word right on ~70% of rows; rows ``noise_rows`` get a non-word answer:
    abstained), its first 24 rows as the labeled file, and a `silr run` config against the server at ``url``."""
    rng = np.random.default_rng(seed)
    filler = {"cars": "engine wheels road driver", "space": "orbit rocket planet launch", "food": "recipe dinner taste cook"}
    rows = []
    for i in range(90):
        gold = WORDS[i % 3]
        shown = gold if rng.random() < 0.7 else WORDS[(i + 1) % 3]  # the server's topic word: 70% right
        noise = " noise" if i in noise_rows else ""
        rows.append({"text": f"item {i} {filler[gold]} {' '.join(rng.permutation(filler[gold].split()))} {shown}{noise}",
                     "gold": gold})
    c = pd.DataFrame(rows)
    c.to_csv(tmp_path / "corpus.csv", index=False)
    c.iloc[:24][["text", "gold"]].rename(columns={"gold": "label"}).to_csv(tmp_path / "lab.csv", index=False)
    job = (f'[data]\ncorpus = "corpus.csv"\ngold_col = "gold"\n[labeled]\nfile = "lab.csv"\n'
           f'[annotator]\nmodel = "openai:fake"\nbase_url = "{url}"\nlabel_words = "cars,space,food"\n'
           f'instruction = "Topic?"\n[refine]\nrounds = 2\n')
    (tmp_path / "job.toml").write_text(job)
    return c, job


def test_silr_run_with_k_label_words_and_a_server(server, tmp_path, monkeypatch):
    """`silr run` with [annotator] model = "openai:NAME" and three label words: the server labels the corpus (K
    scores per row), the K-class refinement runs on them, the evaluation step reads the gold column."""
    from silr.cli import app

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("SILR_CACHE_DIR", str(tmp_path / "cache"))
    _topic_job(tmp_path, server.url, 0)
    r = CliRunner().invoke(app, ["run", str(tmp_path / "job.toml"), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, (r.output, r.exception)
    ann = pd.read_csv(tmp_path / "run" / "annotated.csv")
    assert {f"llm_logp_{w}" for w in WORDS} <= set(ann.columns) and len(server.requests) == 90
    s = json.loads((tmp_path / "run" / "rounds.json").read_text())
    assert s["classes"] == sorted(WORDS) and s["annotation"]["model"] == "openai:fake"
    assert s["round0"].startswith("calibrated")  # scores came with the labels: round 0 read them on the 24 rows
    ev = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert ev["n"] == 90 and ev["per_round"][0]["accuracy"] == pytest.approx(0.7, abs=0.1)


def test_silr_run_leaves_out_rows_the_server_abstained_on(server, tmp_path, monkeypatch):
    """A K-class `silr run` against a server that answers no label word for some texts: those rows have no LLM label
    (abstained); the run leaves them out with a note, as the binary job does (it failed on the first empty label),
    and the evaluation and `silr evaluate` with every corpus row's gold skip them. An abstained labeled row is an
    error naming both rows."""
    from silr.cli import app

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("SILR_CACHE_DIR", str(tmp_path / "cache"))
    c, job = _topic_job(tmp_path, server.url, 1, noise_rows=(40, 41, 77))  # the server answers " banana" there
    c[["gold"]].rename(columns={"gold": "label"}).to_csv(tmp_path / "gold_all.csv", index=False)
    r = CliRunner().invoke(app, ["run", str(tmp_path / "job.toml"), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, (r.output, r.exception)
    assert "3 rows with no LLM label (abstained) are left out" in r.output
    ann = pd.read_csv(tmp_path / "run" / "annotated.csv")
    assert int(ann["llm_label"].isna().sum()) == 3
    labels = pd.read_csv(tmp_path / "run" / "labels.csv")
    assert len(labels) == 87 and not labels["text"].str.contains("noise").any()
    s = json.loads((tmp_path / "run" / "rounds.json").read_text())
    assert s["rows_left_out"]["count"] == 3 and s["rows_left_out"]["rows"] == [42, 43, 79]
    assert "Left out: 3 corpus rows with no LLM label" in (tmp_path / "run" / "report.md").read_text()
    ev = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert ev["n"] == 87
    # silr evaluate with the gold of every corpus row (90): the 3 left-out rows are skipped, same figures
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run"), "--gold", str(tmp_path / "gold_all.csv")])
    assert r.exit_code == 0, (r.output, r.exception)
    ev2 = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert ev2["n"] == 87 and ev2["per_round"] == ev["per_round"]
    # an abstained row in the labeled sample: the error names the labeled row and the corpus row
    c.iloc[[0, 1, 41]][["text", "gold"]].rename(columns={"gold": "label"}).to_csv(tmp_path / "lab2.csv", index=False)
    (tmp_path / "job2.toml").write_text(job.replace('"lab.csv"', '"lab2.csv"'))
    r = CliRunner().invoke(app, ["run", str(tmp_path / "job2.toml"), "--out", str(tmp_path / "run2")])
    assert r.exit_code != 0
    assert "lab2.csv': row 4 is corpus row 43, which has no LLM label" in r.output + str(r.exception)


def test_few_shot_examples_reach_the_server_and_an_example_never_labels_itself(server, tmp_path, monkeypatch):
    from silr.cli import app

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("SILR_OPENAI_API_KEY", raising=False)
    texts = ["cars on a road", "space probes", "food at noon", "more cars", "deep space", "hot food"]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "c.csv", index=False)
    pd.DataFrame({"text": texts[:3] + texts[3:], "label": ["cars", "space", "food", "cars", "space", "food"]}).to_csv(
        tmp_path / "l.csv", index=False)
    r = CliRunner().invoke(app, ["annotate", str(tmp_path / "c.csv"), "--label-words", ",".join(WORDS),
                                 "--instruction", "Topic?", "--model", "openai:fake", "--base-url", server.url,
                                 "--labeled", str(tmp_path / "l.csv"), "--shots", "3", "--no-cache",
                                 "--out", str(tmp_path / "o.csv"), "-q"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert pd.read_csv(tmp_path / "o.csv")["llm_label"].tolist() == ["cars", "space", "food"] * 2
    rec = json.loads((tmp_path / "o.csv.annotation.json").read_text())
    examples = [e["text"] for e in rec["prompt"]["examples"]]
    assert len(examples) == 3 and len(server.requests) == 6
    for req in server.requests:
        body = req["messages"][-1]["content"]
        own = body.rsplit("Text: ", 1)[-1].split("\n")[0]
        shown = re.findall(r"Text: (.*)\nAnswer: (\w+)", body)
        assert len(shown) == 3 and own not in [x for x, _ in shown]  # the other rows of its class stand in
        assert all(dict(zip(texts, ["cars", "space", "food"] * 2))[x] == w for x, w in shown)
