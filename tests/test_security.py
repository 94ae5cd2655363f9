"""Security: the API key never leaks; models are saved and loaded without pickle; hostile model folders and config
files are refused without running anything; the annotator talks only to the configured server."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fakeserver import ScriptedServer, _h

KEY_ENV = "sk-env-SECRET-5b7e02aa"
KEY_OPT = "sk-opt-SECRET-c41d9f07"
ALLOWED_SUFFIXES = {".safetensors", ".json", ".csv", ".png", ".html"}


def _env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.upper().endswith("_PROXY") and not k.startswith(("SILR_OPENAI", "OPENAI_"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HOME=str(tmp_path), SILR_CACHE_DIR=str(tmp_path / "cache"))
    env.update(extra)
    return env


def _silr(args, env, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "silr.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _texts(n: int) -> tuple[list[str], np.ndarray]:
    """Texts whose words carry the class, and the class the fake server's LLM gives (mostly right)."""
    rng = np.random.default_rng(0)
    pos_w, neg_w = ["great", "lovely", "superb", "fun"], ["awful", "boring", "dull", "poor"]
    texts, gold = [], []
    for i in range(n):
        y = int(rng.random() < 0.5)
        words = list(rng.choice(pos_w if y else neg_w, 3)) + list(rng.choice(pos_w + neg_w, 2))
        texts.append(f"{' '.join(words)} film number {i}")
        gold.append(y)
    return texts, np.array(gold)


def _files(*roots: Path) -> list[Path]:
    return [p for r in roots if r.exists() for p in sorted(r.rglob("*")) if p.is_file()]


# ------------------------------------------------------------------------------------------------ a whole run
@pytest.fixture(scope="module")
def run_through_server(tmp_path_factory):
    """`silr run` annotating through the fake server with the key in the environment, then refining (n-grams)."""
    tmp = tmp_path_factory.mktemp("secrun")
    texts, gold = _texts(400)
    # gold agrees with the fake LLM's answer (hash parity) on ~80% of rows, so the refinement has signal
    llm = np.array([int(_h(t) % 2 == 0) for t in texts])
    rng = np.random.default_rng(1)
    gold = np.where(rng.random(len(texts)) < 0.8, llm, 1 - llm)
    pd.DataFrame({"text": texts, "gold": gold}).to_csv(tmp / "corpus.csv", index=False)
    srv = ScriptedServer(fail=0.05, key=KEY_ENV)
    cfg = tmp / "run.toml"
    cfg.write_text(f"""
[data]
corpus = "corpus.csv"
gold_col = "gold"
[labeled]
sample_from_gold = 50
[annotator]
model = "openai:fake"
base_url = "{srv.url}"
instruction = "Is this review positive or negative?"
label_words = "positive,negative"
shots = 2
concurrency = 4
[refine]
backbone = "ngram"
rounds = 2
""")
    try:
        r = _silr(["run", cfg, "--out", tmp / "out"], _env(tmp, SILR_OPENAI_API_KEY=KEY_ENV))
    finally:
        srv.close()
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp, r, srv


def test_key_from_env_never_written_or_logged(run_through_server):
    tmp, r, srv = run_through_server
    assert srv.auth == {f"Bearer {KEY_ENV}": sum(srv.auth.values())}  # it was really sent, in the header only
    out = tmp / "out"
    assert (out / "rounds.json").exists() and (out / "report.html").exists() and (out / "annotation.json").exists()
    assert KEY_ENV not in r.stderr + r.stdout
    for f in _files(out, tmp / "cache"):
        assert KEY_ENV.encode() not in f.read_bytes(), f


def test_key_from_option_never_written_or_logged(tmp_path):
    texts, _ = _texts(60)
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "c.csv", index=False)
    srv = ScriptedServer(fail=0.3, garbage=0.1, key=KEY_OPT)
    base = ["annotate", tmp_path / "c.csv", "--model", "openai:fake", "--base-url", srv.url, "--instruction",
            "Positive or negative?", "--label-words", "positive,negative", "--timeout", "0.5"]
    try:
        r = _silr(base + ["--out", tmp_path / "o" / "a.csv", "--api-key", KEY_OPT], _env(tmp_path))
        assert r.returncode == 0, r.stderr[-2000:]
        assert "abstained" in r.stderr  # the warnings were logged, without the key
        # a refused key: the error names the problem, never the key
        bad = "sk-opt-WRONG-0000111122223333"
        r2 = _silr(base + ["--out", tmp_path / "o" / "b.csv", "--api-key", bad, "--no-cache"], _env(tmp_path))
    finally:
        srv.close()
    assert r2.returncode == 1 and "wrong or missing API key" in r2.stderr and bad not in r2.stderr + r2.stdout
    assert KEY_OPT not in r.stderr + r.stdout
    files = _files(tmp_path / "o", tmp_path / "cache")
    assert {"a.csv", "a.csv.annotation.json", "annotations.sqlite"} <= {f.name for f in files}
    for f in files:
        assert KEY_OPT.encode() not in f.read_bytes() and bad.encode() not in f.read_bytes(), f


# ------------------------------------------------------------------------------------------------ no pickle
def test_run_folder_holds_no_pickle(run_through_server):
    out = run_through_server[0] / "out"
    files = _files(out)
    assert any(f.suffix == ".safetensors" for f in files)
    from safetensors import safe_open

    for f in files:
        assert f.suffix in ALLOWED_SUFFIXES, f"unexpected file {f.relative_to(out)}"
        data = f.read_bytes()
        if f.suffix == ".safetensors":  # parses as safetensors: a JSON header, then raw tensor bytes
            with safe_open(str(f), framework="numpy") as st:
                assert list(st.keys())
        elif f.suffix == ".png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n"), f
        elif f.suffix == ".json":
            json.loads(data)
        else:  # csv, html: text
            data.decode("utf-8")
        assert not data.startswith(b"PK\x03\x04"), f"{f} looks like a torch.save zip"


@pytest.fixture
def no_unpickling(monkeypatch):
    import torch

    def refuse(*a, **k):
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    orig = np.load
    monkeypatch.setattr(np, "load", lambda *a, allow_pickle=False, **k: orig(*a, allow_pickle=False, **k))


def test_predict_never_unpickles(run_through_server, tmp_path, no_unpickling):
    from typer.testing import CliRunner

    from silr.cli import app

    texts, _ = _texts(30)
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "new.csv", index=False)
    r = CliRunner().invoke(app, ["predict", str(run_through_server[0] / "out"), str(tmp_path / "new.csv"),
                                 "--out", str(tmp_path / "pred.csv"), "--quiet"])
    assert r.exit_code == 0, (r.output, r.exception)
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert len(pred) == 30 and np.isfinite(pred["score"]).all()


# ------------------------------------------------------------------------------------------------ hostile folders
EVIL_PY = "import pathlib\npathlib.Path({marker!r}).write_text('pwned')\nclass Evil: pass\n"


def _hostile_copy(run_through_server, tmp_path) -> tuple[Path, Path]:
    run = tmp_path / "run"
    shutil.copytree(run_through_server[0] / "out", run)
    marker = tmp_path / "PWNED"
    for name in ("evil.py", "modeling_evil.py", "configuration_evil.py"):
        (run / "model" / name).write_text(EVIL_PY.format(marker=str(marker)))
    pd.DataFrame({"text": ["great fun film", "dull poor film"]}).to_csv(tmp_path / "new.csv", index=False)
    return run, marker


def _predict(run, tmp_path):
    return _silr(["predict", run, tmp_path / "new.csv", "--out", tmp_path / "pred.csv", "--quiet"], _env(tmp_path))


def _assert_refused(r, marker, *needles):
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr
    assert not marker.exists(), "hostile code ran"


def test_hostile_config_requesting_custom_code(run_through_server, tmp_path):
    run, marker = _hostile_copy(run_through_server, tmp_path)
    cfg_file = run / "model" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["auto_map"] = {"AutoModel": "evil.Evil", "AutoConfig": "configuration_evil.Evil"}
    cfg["trust_remote_code"] = True
    cfg_file.write_text(json.dumps(cfg))
    _assert_refused(_predict(run, tmp_path), marker, "custom code", "config.json")
    # the same smuggled in as a constructor parameter
    cfg = json.loads((run_through_server[0] / "out" / "model" / "config.json").read_text())
    cfg["params"]["trust_remote_code"] = True
    cfg_file.write_text(json.dumps(cfg))
    _assert_refused(_predict(run, tmp_path), marker, "trust_remote_code", "config.json")


def test_hostile_backbone_pointing_at_custom_code(run_through_server, tmp_path):
    """backbone.json naming a sentence-transformers folder whose config asks for custom code."""
    run, marker = _hostile_copy(run_through_server, tmp_path)
    st = run / "model" / "st"
    st.mkdir()
    (st / "config.json").write_text(json.dumps({
        "model_type": "evil", "hidden_size": 8, "architectures": ["Evil"],
        "auto_map": {"AutoConfig": "configuration_evil.Evil", "AutoModel": "modeling_evil.Evil"}}))
    (st / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "",
                                                   "type": "sentence_transformers.models.Transformer"}]))
    for name in ("modeling_evil.py", "configuration_evil.py"):
        (st / name).write_text(EVIL_PY.format(marker=str(marker)))
    (run / "model" / "backbone.json").write_text(json.dumps(
        {"name": f"st:{st}", "kind": "sentence-transformers", "model_dir": str(st), "dim": 8}))
    r = _predict(run, tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "contains custom code" in r.stderr  # transformers refuses: trust_remote_code is never passed
    assert not marker.exists(), "hostile code ran"


def test_garbage_weights_and_wrong_format(run_through_server, tmp_path):
    run, marker = _hostile_copy(run_through_server, tmp_path)
    weights = run / "model" / "weights.safetensors"
    assert weights.exists()
    weights.write_bytes(pickle.dumps({"x": 1}) + os.urandom(64))
    _assert_refused(_predict(run, tmp_path), marker, "weights.safetensors")
    shutil.copy(run_through_server[0] / "out" / "model" / "weights.safetensors", weights)
    for idf in (run / "model").glob("ngram*.safetensors"):
        idf.write_bytes(b"\x00" * 40)
        _assert_refused(_predict(run, tmp_path), marker, idf.name)
        shutil.copy(run_through_server[0] / "out" / "model" / idf.name, idf)
    cfg_file = run / "model" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["format"] = "pickle/evil"
    cfg_file.write_text(json.dumps(cfg))
    _assert_refused(_predict(run, tmp_path), marker, "is not a silr model", "pickle/evil")
    cfg_file.write_text("{not json")
    _assert_refused(_predict(run, tmp_path), marker, "config.json")
    assert not (tmp_path / "pred.csv").exists()


# ------------------------------------------------------------------------------------------------ hostile YAML
def test_hostile_yaml_is_rejected_without_running(tmp_path):
    marker = tmp_path / "PWNED"
    evil = (f"data: !!python/object/apply:os.system ['touch {marker}']\n"
            f"refine: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n")
    (tmp_path / "run.yaml").write_text(evil)
    r = _silr(["run", tmp_path / "run.yaml", "--out", tmp_path / "out"], _env(tmp_path))
    _assert_refused(r, marker, "does not parse")
    (tmp_path / "prompt.yaml").write_text(f"instruction: !!python/object/apply:os.system ['touch {marker}']\n"
                                          "label_words: {positive: yes, negative: no}\n")
    pd.DataFrame({"text": ["a", "b"]}).to_csv(tmp_path / "c.csv", index=False)
    r = _silr(["annotate", tmp_path / "c.csv", "--out", tmp_path / "o.csv", "--prompt", tmp_path / "prompt.yaml",
               "--model", "openai:x", "--base-url", "http://127.0.0.1:9/v1"], _env(tmp_path))
    _assert_refused(r, marker, "prompt.yaml")
    assert not (tmp_path / "out").exists() and not (tmp_path / "o.csv").exists()


# ------------------------------------------------------------------------------------------------ only the server
def test_requests_go_only_to_the_base_url(tmp_path, monkeypatch):
    from silr.annotate.prompts import ShotPlan, load_prompt
    from silr.annotate.server import OpenAICompatibleAnnotator
    from silr.annotate.types import AnnotationError

    srv, proxy, other = ScriptedServer(fail=0.2), ScriptedServer(fail=0.0), ScriptedServer(fail=0.0)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", other.url)  # an explicit base URL wins over the environment
    prompt = ShotPlan(load_prompt("generic").with_updates(positive=" positive", negative=" negative"), shots=0).main
    try:
        ann = OpenAICompatibleAnnotator("fake", srv.url, api_key="k", concurrency=4, timeout=0.5, backoff=0.01)
        res = dict(ann.score([f"text {i}" for i in range(40)], prompt))
        assert len(res) == 40
        assert set(srv.hosts) == {f"127.0.0.1:{srv.port}"}
        assert set(srv.paths) == {"/v1/chat/completions"}
        # a redirect is not followed: a clear error, and the target never hears from us
        redirector = ScriptedServer(redirect_to=other.url)
        try:
            ann = OpenAICompatibleAnnotator("fake", redirector.url, api_key="k", backoff=0.01)
            with pytest.raises(AnnotationError, match="HTTP 307"):
                list(ann.score(["text x"], prompt))
        finally:
            redirector.close()
    finally:
        for s in (srv, proxy, other):
            s.close()
    assert sum(proxy.paths.values()) == 0 and sum(other.paths.values()) == 0
