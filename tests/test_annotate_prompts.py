"""Prompt specs, few-shot plans and threshold calibration (no model needed)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from silr.annotate.calibrate import auc, best_accuracy_threshold, choose_threshold, prior_threshold
from silr.annotate.prompts import (PromptError, ShotPlan, build_prompt, builtin_prompts, load_prompt,
                                   spec_from_instruction)


# ----------------------------------------------------------------------------------------------- prompt specs
def test_builtin_prompts_load_and_render():
    names = builtin_prompts()
    assert {"sentiment", "spam", "generic"} <= set(names)
    for n in names:
        spec = load_prompt(n)
        assert spec.name == n
        p = build_prompt(spec)
        assert "{" not in p.prefix.replace("{{", "")
        assert p.render("a text").endswith(p.suffix_tail)
    s = load_prompt("sentiment")
    assert (s.positive, s.negative) == (" positive", " negative")


def test_toml_and_yaml_files(tmp_path):
    t = tmp_path / "satire.toml"
    t.write_text('instruction = "Is it satire?"\ntemplate = "{instruction}\\n\\n{examples}News: {text}\\nKind:"\n'
                 'example_template = "News: {text}\\nKind:{label}\\n\\n"\nmax_text_chars = 50\n'
                 '[label_words]\npositive = " satire"\nnegative = " news"\n')
    spec = load_prompt(t)
    assert spec.positive == " satire" and spec.max_text_chars == 50 and spec.source == str(t)
    y = tmp_path / "p.yaml"
    y.write_text("instruction: Is it spam?\nlabel_words:\n  positive: ' spam'\n  negative: ' ham'\n"
                 "label_meanings:\n  positive: junk\n  negative: normal\n")
    spec = load_prompt(y)
    assert spec.negative == " ham" and spec.label_meanings == {"positive": "junk", "negative": "normal"}
    p = build_prompt(spec)
    assert p.render("z" * 5000).count("z") == spec.max_text_chars  # clipped to max_text_chars
    assert p.clip("  a\n\nb  ") == ("a b", False)


@pytest.mark.parametrize(
    "body, field",
    [
        ('label_words = { positive = " a", negative = " b" }\n', "instruction"),
        ('instruction = "x"\n', "label_words"),
        ('instruction = "x"\nlabel_words = { positive = " a" }\n', "label_words.negative"),
        ('instruction = "x"\nlabel_word = { positive = " a", negative = " b" }\n', "label_word"),
        ('instruction = "x"\ntemplat = "{text}"\nlabel_words = { positive = " a", negative = " b" }\n', "templat"),
        ('instruction = "x"\ntemplate = "{examples} no text"\nlabel_words = { positive = " a", negative = " b" }\n',
         "template"),
        ('instruction = "x"\ntemplate = "{examples}{text}{oops}"\nlabel_words = { positive = " a", negative = " b" }\n',
         "template"),
        ('instruction = "x"\nmax_text_chars = 0\nlabel_words = { positive = " a", negative = " b" }\n', "max_text_chars"),
        ('instruction = "x"\nexample_template = "{text}"\nlabel_words = { positive = " a", negative = " b" }\n',
         "example_template"),
        ('instruction = "x"\nlabel_words = { positive = " a", negative = " A" }\n', "label_words"),
        ('instruction = "x = ', "TOML"),
    ],
)
def test_bad_spec_errors_name_file_and_field(tmp_path, body, field):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(PromptError) as e:
        load_prompt(f)
    msg = str(e.value)
    assert str(f) in msg and field in msg
    assert "\n" not in msg


def test_prompt_file_not_found_and_bad_suffix(tmp_path):
    with pytest.raises(PromptError, match="not found"):
        load_prompt(tmp_path / "nope.toml")
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(PromptError, match=r"\.toml"):
        load_prompt(tmp_path / "p.txt")


def test_instruction_and_label_words():
    spec = spec_from_instruction("Satire or news?", "satire,news", base=load_prompt("generic"))
    assert (spec.positive, spec.negative) == (" satire", " news")
    with pytest.raises(PromptError):
        spec_from_instruction("x", "onlyone")


def test_braces_in_texts_are_safe():
    p = build_prompt(load_prompt("generic"))
    assert "{text}" in p.render("a {text} and {examples}")


# ----------------------------------------------------------------------------------------------- few-shot
TEXTS = [f"text number {i}" for i in range(20)]
LABELS = [1] * 6 + [0] * 14


def test_shots_balanced_deterministic_and_from_labeled_only():
    spec = load_prompt("generic")
    a = ShotPlan(spec, TEXTS, LABELS, shots=4, seed=3)
    b = ShotPlan(spec, TEXTS, LABELS, shots=4, seed=3)
    c = ShotPlan(spec, TEXTS, LABELS, shots=4, seed=4)
    assert a.main.prefix == b.main.prefix and a.shot_rows == b.shot_rows
    assert a.main.hash != c.main.hash or a.shot_rows != c.shot_rows
    labs = [s.label for s in a.main.shots]
    assert sorted(labs) == [0, 0, 1, 1]
    assert all(s.text in TEXTS for s in a.main.shots)
    for s in a.main.shots:
        assert s.text in a.main.prefix
    # odd number of shots: 2/1 or 1/2; one class short: fill from the other
    assert len(ShotPlan(spec, TEXTS, LABELS, shots=3, seed=0).main.shots) == 3
    few = ShotPlan(spec, TEXTS[:7], [1] + [0] * 6, shots=4, seed=0)
    assert sorted(s.label for s in few.main.shots) == [0, 0, 0, 1]
    assert ShotPlan(spec, [], [], shots=4).main.shots == ()


def test_a_shot_is_never_its_own_example():
    spec = load_prompt("generic")
    plan = ShotPlan(spec, TEXTS, LABELS, shots=4, seed=0)
    for s in plan.main.shots:
        alt = plan.prompt_for(s.text)
        assert alt is not plan.main
        assert s.text not in [x.text for x in alt.shots]
        assert sorted(x.label for x in alt.shots) == sorted(x.label for x in plan.main.shots)
        assert alt.hash != plan.main.hash
    assert plan.prompt_for("some other text") is plan.main


# ----------------------------------------------------------------------------------------------- calibration
def test_accuracy_threshold_real_numbers():
    thr, acc = best_accuracy_threshold([-2, -1, 0.5, 1, 3], [0, 0, 1, 0, 1])
    assert thr == pytest.approx(-0.25) and acc == pytest.approx(0.8)
    # a plateau of equally good thresholds: the middle is taken
    thr, acc = best_accuracy_threshold([-3, -2, 2, 3], [0, 0, 1, 1])
    assert thr == pytest.approx(0.0) and acc == 1.0
    thr, rec = choose_threshold("accuracy", [-5, 0, 5], [-2, -1, 0.5, 1, 3], [0, 0, 1, 0, 1])
    assert rec["method"] == "accuracy" and rec["value"] == thr == pytest.approx(-0.25)
    assert rec["labeled_accuracy"] == pytest.approx(0.8)
    assert rec["labeled_auc"] == pytest.approx(5 / 6)
    assert rec["corpus_positive_rate"] == pytest.approx(2 / 3)


def test_prior_threshold_real_numbers():
    corpus = np.arange(10.0)
    assert prior_threshold(corpus, 0.3) == pytest.approx(6.5)
    thr, rec = choose_threshold("prior", corpus, [1.0, 2.0, 8.0, 9.0, 0.0, 7.0, 3.0, 4.0, 5.0, 6.0],
                                [1, 0, 1, 0, 0, 1, 0, 0, 0, 0])
    assert thr == pytest.approx(6.5) and rec["method"] == "prior"
    assert rec["labeled_positive_rate"] == pytest.approx(0.3)
    assert rec["corpus_positive_rate"] == pytest.approx(0.3)
    assert rec["labeled_accuracy"] == pytest.approx(0.8)
    assert prior_threshold(corpus, 0.0) > 9 and prior_threshold(corpus, 1.0) < 0


def test_fixed_threshold_and_defaults(caplog):
    thr, rec = choose_threshold(0.25, [0.0, 1.0], [0.0, 1.0], [0, 1])
    assert thr == 0.25 and rec["method"] == "fixed" and rec["labeled_accuracy"] == 1.0
    thr, rec = choose_threshold("1.5", [0.0, 1.0, 2.0])
    assert thr == 1.5 and rec["labeled_accuracy"] is None and rec["corpus_positive_rate"] == pytest.approx(1 / 3)
    with caplog.at_level(logging.WARNING):
        thr, rec = choose_threshold(None, [-1.0, 1.0])
    assert thr == 0.0 and rec["method"] == "fixed" and "no labeled sample" in caplog.text
    thr, rec = choose_threshold(None, [0.0], [-1.0, 1.0], [0, 1])
    assert rec["method"] == "accuracy"
    with pytest.raises(ValueError, match="labeled"):
        choose_threshold("prior", [0.0])
    with pytest.raises(ValueError, match="accuracy"):
        choose_threshold("best", [0.0])


def test_calibration_ignores_abstained():
    thr, rec = choose_threshold("accuracy", [np.nan, 1.0, -1.0], [np.nan, -1.0, 1.0, None], [1, 0, 1, 0])
    assert rec["n_labeled_scored"] == 2 and rec["labeled_accuracy"] == 1.0
    assert auc([1, 2, None], [0, 1, 1]) == 1.0
    assert auc([1, 2], [1, 1]) is None
    assert math.isnan(np.nan) and rec["corpus_positive_rate"] == 0.5
