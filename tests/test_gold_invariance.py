"""Gold invariance: the labeled sample is the only gold a run reads.

Every gold label outside the labeled sample (corpus and test) is changed, and the labels, the handed-back
source, the saved model's bytes and the predictions must stay bit-identical: for the estimator, for
`silr refine` / `silr predict`, and for the benchmark's silr method (including the LLM threshold it fits).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def _task(seed=0, n=900, nt=300, d=12):
    rng = np.random.default_rng(seed)
    y, yt = rng.integers(0, 2, n), rng.integers(0, 2, nt)
    X = (rng.normal(size=(n, d)) + 0.7 * y[:, None]).astype(np.float32)
    Xt = (rng.normal(size=(nt, d)) + 0.7 * yt[:, None]).astype(np.float32)
    cs = 1.6 * (y - 0.5) + rng.normal(size=n)
    ts = 1.6 * (yt - 0.5) + rng.normal(size=nt)
    lab = np.sort(rng.choice(n, 50, replace=False))
    return X, Xt, y, yt, cs, ts, lab


def _scramble(y, keep, seed):
    """Every gold label outside ``keep`` replaced by a random one (about half of them change)."""
    z = np.random.default_rng(seed).integers(0, 2, y.size)
    if keep is not None:
        z[keep] = y[keep]
    return z


def _refiner(seed=0):
    from silr import refine

    make = getattr(refine, "refiner_from_params", refine.SelfIterativeRefiner)
    return make(seed=seed, epochs=5, rounds=2)


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("with_scores", [True, False])
def test_estimator_outputs_do_not_move_with_gold_outside_the_labeled_rows(tmp_path, with_scores):
    from silr.bench.methods import fit_refiner

    X, Xt, y, yt, cs, ts, lab = _task()
    s = (cs > 0).astype(np.int8)
    outs = []
    for k, gold in enumerate((y, _scramble(y, lab, 1), _scramble(y, lab, 2))):
        assert k == 0 or np.mean(gold != y) > 0.3  # the scramble really changes the gold outside the sample
        m = _refiner()
        fit_refiner(m, X, s, lab, gold[lab], llm_score=cs if with_scores else None)
        m.save(tmp_path / f"m{k}")
        ev = ts if with_scores else (ts > 0).astype(np.float64)
        outs.append((m.transduction_.copy(), str(m.final_source_), m.predict(Xt, llm_score=ev),
                     m.decision_function(Xt, llm_score=ev), _files(tmp_path / f"m{k}")))
    for o in outs[1:]:
        assert np.array_equal(o[0], outs[0][0])
        assert o[1] == outs[0][1]
        assert np.array_equal(o[2], outs[0][2])
        assert np.array_equal(o[3], outs[0][3])
        assert o[4] == outs[0][4] and len(o[4]) >= 1


@pytest.mark.parametrize("track", ["llm", "noise"])
def test_bench_silr_method_does_not_move_with_gold_outside_the_labeled_rows(track):
    from silr.bench.methods import Inputs, run_method
    from silr.bench.runner import llm_pseudo_labels

    X, Xt, y, yt, cs, ts, lab = _task(seed=3)
    got = []
    for k in range(3):
        gold = y if k == 0 else _scramble(y, lab, 10 + k)
        gold_t = yt if k == 0 else _scramble(yt, None, 20 + k)
        if track == "llm":  # the threshold is fitted on the labeled rows' gold only
            s, s_t, thr = llm_pseudo_labels(cs, ts, lab, gold[lab])
            ev, ev_t = cs, ts
        else:
            s, s_t, thr = (cs > 0).astype(np.int8), (ts > 0).astype(np.int8), 0.0
            ev, ev_t = s.astype(np.float64), s_t.astype(np.float64)
        inp = Inputs(X, Xt, s, s_t, lab, gold, gold_t, ev, ev_t, track == "llm", 0, {"epochs": 5, "rounds": 2})
        r = run_method("silr", inp)
        assert r.error is None, r.error
        got.append((thr, r.corpus_pred, r.test_pred, r.info))
    for g in got[1:]:
        assert g[0] == got[0][0]
        assert np.array_equal(g[1], got[0][1]) and np.array_equal(g[2], got[0][2])
        assert g[3] == got[0][3]  # handed-back source, rounds, stop reason, selection


def _silr(*args):
    p = subprocess.run([sys.executable, "-m", "silr.cli", *map(str, args)], capture_output=True, text=True)
    assert p.returncode == 0, f"silr {args} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p


def _texts(y, rng):
    pos, neg = ["good", "great", "fine", "superb", "lovely"], ["bad", "awful", "poor", "dull", "weak"]
    filler = ["the", "film", "plot", "was", "very", "a", "cast", "story"]
    out = []
    for i, v in enumerate(y):
        words = list(rng.choice(filler, 6)) + list(rng.choice(pos if v else neg, 2)) + list(rng.choice(pos + neg, 1))
        out.append(" ".join(words) + f" #{i}")
    return out


def test_cli_refine_and_predict_do_not_move_with_gold_outside_the_labeled_rows(tmp_path):
    rng = np.random.default_rng(0)
    n, nt = 600, 150
    y, yt = rng.integers(0, 2, n), rng.integers(0, 2, nt)
    texts, ttexts = _texts(y, rng), _texts(yt, rng)
    score = 1.5 * (y - 0.5) + rng.normal(size=n)
    tscore = 1.5 * (yt - 0.5) + rng.normal(size=nt)
    lab = np.sort(rng.choice(n, 50, replace=False))
    pd.DataFrame({"text": [texts[i] for i in lab], "label": y[lab]}).to_csv(tmp_path / "labeled.csv", index=False)
    outs = []
    for k in range(2):
        gold = y if k == 0 else _scramble(y, lab, 5)
        gold_t = yt if k == 0 else _scramble(yt, None, 6)
        assert k == 0 or (np.mean(gold != y) > 0.3 and np.mean(gold_t != yt) > 0.3)
        d = tmp_path / f"k{k}"
        d.mkdir()
        # the corpus and test files carry a gold column ("label") the commands must never read
        pd.DataFrame({"text": texts, "llm_score": score, "pseudo": (score > 0).astype(int), "label": gold}).to_csv(
            d / "corpus.csv", index=False)
        pd.DataFrame({"text": ttexts, "llm_score": tscore, "label": gold_t}).to_csv(d / "test.csv", index=False)
        p = _silr("refine", d / "corpus.csv", "--pseudo-col", "pseudo", "--score-col", "llm_score", "--labeled",
                  tmp_path / "labeled.csv", "--out", d / "run", "--backbone", "ngram", "--rounds", 2, "--seed", 0,
                  "--no-report", "--quiet")
        _silr("predict", d / "run", d / "test.csv", "--score-col", "llm_score", "--out", d / "pred.csv", "--quiet")
        pred = pd.read_csv(d / "pred.csv").drop(columns=["input_label"])  # the test file's own gold column
        final = [line for line in p.stderr.splitlines() if line.startswith("final labels:")]
        outs.append(((d / "run" / "labels.csv").read_bytes(), _files(d / "run" / "model"), final,
                     pred.to_csv(index=False)))
    assert outs[1][0] == outs[0][0]  # refined labels, byte for byte
    assert outs[1][1] == outs[0][1] and any(k.endswith(".json") for k in outs[0][1])  # saved model, byte for byte
    assert outs[1][2] == outs[0][2] and len(outs[0][2]) == 1  # handed-back source
    assert outs[1][3] == outs[0][3]  # predictions on the test texts (score, label, proba)
    assert json.loads((tmp_path / "k0" / "run" / "model" / "config.json").read_text())["final_source"]
