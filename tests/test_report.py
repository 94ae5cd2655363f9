"""Tests for silr.report: static HTML checks plus a headless-Chromium render.

The Chromium test needs the Debian package ``chromium``
(``apt-get update && apt-get install -y chromium``); it is skipped when the
binary is not on PATH.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from silr.report import write_report

N = 600
THETA_P_R2 = 0.87654  # -> "0.877" in the table


def _make_run(out: Path, *, backbone_name: str = "minilm", write: bool = True):
    rng = np.random.default_rng(0)
    gold = (rng.random(N) < 0.45).astype(int)
    noise = [0.30, 0.20, 0.15, 0.12]
    labels = {}
    for k, p in enumerate(noise):
        flip = rng.random(N) < p
        labels[f"round_{k}"] = np.where(flip, 1 - gold, gold)
    labels["final"] = labels["round_2"]
    labels["score"] = np.where(gold == 1, 1.0, -1.0) + rng.normal(0, 0.9, N)
    df = pd.DataFrame(labels)

    def hist(n, start):
        return [{"epoch": e, "train_loss": start * 0.97 ** e, "val_loss": start * 0.97 ** e + 0.02 + 0.0004 * e}
                for e in range(1, n + 1)]

    stats = [
        dict(pi=0.48, theta_p=0.81, theta_n=0.22, accuracy=0.70),
        dict(pi=0.46, theta_p=0.84, theta_n=0.17, accuracy=0.78),
        dict(pi=0.45, theta_p=THETA_P_R2, theta_n=0.13, accuracy=0.84),
        dict(pi=0.45, theta_p=0.86, theta_n=0.14, accuracy=0.83),
    ]
    rounds_list = []
    for k, st in enumerate(stats):
        iv = {key: [max(0.0, v - 0.08), min(1.0, v + 0.08)] for key, v in st.items()}
        iv["gap"] = [0.45, 0.75]
        r = {"round": k, **st, "intervals": iv, "pseudo_positive_rate": float(df[f"round_{k}"].mean())}
        if k == 0:
            r.update(source="pseudo-labels", n_changed=None, risk=None, train_loss=None, val_loss=None,
                     best_epoch=None, history=[])
        else:
            h = hist(30 + 5 * k, 0.35 - 0.03 * k)
            r.update(source="classifier", risk="robust_uu", trained_with=stats[k - 1],
                     n_changed=int((df[f"round_{k}"] != df[f"round_{k-1}"]).sum()),
                     train_loss=h[-1]["train_loss"], val_loss=h[-1]["val_loss"], best_epoch=20 + k,
                     history=h, seconds=3.2 + k)
        rounds_list.append(r)
    final_acc = float((df["final"] == gold).mean())
    rounds = {
        "silr_version": "0.1.0",
        "backbone": {"name": backbone_name, "dim": 384},
        "params": {"rounds": 3, "risk": "robust_uu", "lr": 1e-3},
        "n_corpus": N,
        "n_labeled": 50,
        "rounds": rounds_list,
        "final_round": 2,
        "stop_reason": "completed 3 rounds",
        "selection": "round 2 has the highest estimated accuracy (0.840)",
        "evaluation": {"gold": "test.csv",
                       "per_round": [{"round": k, "accuracy": float((df[f"round_{k}"] == gold).mean()),
                                      "f1": 0.7} for k in range(4)],
                       "test_per_round": [{"round": k, "accuracy": 0.8 + 0.01 * k, "f1": 0.75, "n": 200}
                                          for k in range(4)],
                       "final_accuracy": final_acc, "confusion": [[1, 2], [3, 4]]},
    }
    if write:
        out.mkdir(parents=True, exist_ok=True)
        (out / "rounds.json").write_text(json.dumps(rounds))
        df.to_csv(out / "labels.csv", index=False)
    return rounds, df, gold, final_acc


def _data_uri_pngs(html_text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html_text)]


@pytest.fixture()
def run(tmp_path):
    out = tmp_path / "run"
    rounds, df, gold, final_acc = _make_run(out)
    path = write_report(out, gold=gold)
    return out, path, final_acc


EXPECTED_PLOTS = ["priors.png", "accuracy.png", "scores.png", "confusion.png", "loss.png"]


def test_files_and_self_contained(run):
    out, path, final_acc = run
    assert path == out / "report.html" and path.is_file()
    for name in EXPECTED_PLOTS:
        p = out / "plots" / name
        assert p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    # no temp files left behind by the atomic writes
    assert not [p for p in out.rglob("*.tmp")]
    text = path.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', text, re.I)
    assert "<script" not in text.lower() and "<link" not in text.lower()
    # one <img> per plot, each a valid embedded PNG
    imgs = re.findall(r"<img\b[^>]*>", text)
    assert len(imgs) == len(EXPECTED_PLOTS)
    assert all('src="data:image/png;base64,' in i for i in imgs)
    from PIL import Image
    for png in _data_uri_pngs(text):
        with Image.open(io.BytesIO(png)) as im:
            assert im.size[0] > 200 and im.size[1] > 200
    # numbers from the table / summary
    assert "0.877" in text  # theta_p of round 2
    assert "[0.797, 0.957]" in text  # its interval
    assert f"{final_acc:.3f}" in text  # final gold accuracy
    assert "completed 3 rounds" in text and "highest estimated accuracy" in text
    assert "Gold accuracy" in text
    assert "Held-out test set" in text and "0.820" in text  # evaluation.test_per_round


def test_without_gold_and_missing_keys(tmp_path):
    out = tmp_path / "run"
    rounds, df, gold, final_acc = _make_run(out, write=False)
    del rounds["evaluation"]
    rounds["rounds"][1].pop("intervals")
    rounds["rounds"][2]["theta_n"] = None
    rounds["rounds"][3]["history"] = None
    rounds.pop("final_round")
    path = write_report(out, rounds=rounds, labels=df.drop(columns=["score"]), title="t")
    text = path.read_text()
    assert not (out / "plots" / "confusion.png").exists()
    assert len(re.findall(r"<img\b", text)) == 4
    assert "Gold accuracy" not in text


def test_gold_length_mismatch(tmp_path):
    out = tmp_path / "run"
    _make_run(out)
    with pytest.raises(ValueError):
        write_report(out, gold=np.zeros(N - 1))


def test_html_escaping(tmp_path):
    out = tmp_path / "run"
    evil = '<script>alert("x")</script><img src=x onerror=1>'
    _make_run(out, backbone_name=evil)
    text = write_report(out, title="A & <b>B</b>").read_text()
    assert "<script>" not in text and "<img src=x" not in text and "<b>B</b>" not in text
    assert html_escaped(evil) in text
    assert "A &amp; &lt;b&gt;B&lt;/b&gt;" in text


def html_escaped(s: str) -> str:
    import html
    return html.escape(s, quote=True)


CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def _chromium(args, tmp_path, name):
    profile = tmp_path / f"profile-{name}"
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "HOME": str(tmp_path)})


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed "
                    "(apt-get update && apt-get install -y chromium)")
def test_renders_in_headless_chromium(run, tmp_path):
    out, path, final_acc = run
    url = path.resolve().as_uri()
    res = _chromium(["--dump-dom", url], tmp_path, "dom")
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    imgs = re.findall(r"<img\b[^>]*>", dom)
    assert len(imgs) == len(EXPECTED_PLOTS), dom[:2000]
    for name in EXPECTED_PLOTS:
        assert f'data-plot="{name}"' in dom
    assert "0.877" in dom and f"{final_acc:.3f}" in dom
    assert re.search(r"<table[^>]*class=\"rounds\"", dom)

    shot = tmp_path / "shot.png"
    res = _chromium([f"--screenshot={shot}", "--window-size=1200,3000", url], tmp_path, "shot")
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    keep = os.environ.get("SILR_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
    assert shot.stat().st_size > 20_000
    from PIL import Image
    with Image.open(shot) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert arr.shape[1] == 1200
    assert arr.std() > 10
    colours = np.unique(arr.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 50
    # the figures region is actually painted (not just the white page): some rows below
    # the header contain non-white pixels from the embedded images
    nonwhite_rows = np.mean((arr < 235).any(axis=2), axis=1)
    assert (nonwhite_rows > 0.05).sum() > 300
