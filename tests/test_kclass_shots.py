"""Few-shot K-class prompts (silr.multiclass.shots, KPrompt examples): pure logic, no model."""

import numpy as np
import pytest

from silr.annotate.types import AnnotationError
from silr.multiclass.annotate import KPrompt, kprompt_from_words, load_kprompt
from silr.multiclass.shots import KShotPlan, score_by_plan, shots_per_class


def test_examples_go_into_the_shared_prefix_and_zero_shot_prompts_are_unchanged():
    p = kprompt_from_words("a,b,c", "Which?")
    assert "examples" not in p.to_dict() and p.prefix == "Which?\nAnswer with one word: a, b, c.\n\n"
    q = KPrompt("Which?", ("a", "b", "c"), examples=(("first  text", "B"), ("second", "a")))
    assert q.prefix == p.prefix + "Text: first text\nAnswer: b\n\nText: second\nAnswer: a\n\n"
    assert q.to_dict()["examples"] == [{"text": "first  text", "label": "b"}, {"text": "second", "label": "a"}]
    with pytest.raises(AnnotationError, match="example 1 has label 'd'"):
        KPrompt("Which?", ("a", "b", "c"), examples=(("x", "d"),))


def test_prompt_file_examples(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('instruction = "Which?"\nlabel_words = ["a", "b", "c"]\n'
                 'examples = [{text = "one", label = "a"}, {text = "two", label = "c"}]\n')
    assert load_kprompt(f).examples == (("one", "a"), ("two", "c"))
    f.write_text('instruction = "Which?"\nlabel_words = ["a", "b", "c"]\nexamples = ["one"]\n')
    with pytest.raises(AnnotationError, match="examples must be a list of tables"):
        load_kprompt(f)


def test_plan_takes_the_same_number_per_class_and_leaves_an_example_out_of_its_own_prompt():
    assert [shots_per_class(n, 3) for n in (0, 1, 3, 4, 6)] == [0, 1, 1, 2, 2]
    spec = kprompt_from_words("a,b,c", "Which?")
    texts = [f"t{i}" for i in range(9)]
    labels = ["a", "b", "c"] * 3
    plan = KShotPlan(spec, texts, labels, shots=4, seed=1)  # 4 -> 2 per class
    ex = plan.examples
    assert len(ex) == 6 and sorted(w for _, w in ex) == ["a", "a", "b", "b", "c", "c"]
    assert plan.prompt_for("unseen").examples == plan.main.examples
    own = ex[0][0]
    alt = plan.prompt_for(own)
    assert own not in [x for x, _ in alt.examples] and len(alt.examples) == 6  # the class's third row stands in
    assert sorted(w for _, w in alt.examples) == ["a", "a", "b", "b", "c", "c"]
    assert KShotPlan(spec, texts, labels, shots=4, seed=1).examples == ex  # deterministic from the seed
    short = KShotPlan(spec, texts[:4], labels[:4], shots=6, seed=0)  # a: 2 rows, b, c: 1 each for 2 per class
    assert len(short.examples) == 4 and any("class 'b' has 1 usable" in n for n in short.notes)
    with pytest.raises(AnnotationError, match="row 2 has label 'z'"):
        KShotPlan(spec, ["x", "y"], ["a", "z"], shots=3)


def test_score_by_plan_scores_each_text_with_its_own_prompt_in_order():
    spec = kprompt_from_words("a,b,c", "Which?")
    plan = KShotPlan(spec, ["s1", "s2", "s3"], ["a", "b", "c"], shots=3, seed=0)

    def fake(ts, prompt, cb):  # a score that tells which prompt scored which text
        n_ex = len(prompt.examples)
        lp = np.array([[len(t), n_ex, float(any(x == t for x, _ in prompt.examples))] for t in ts], dtype=float)
        return lp, np.zeros(len(ts), dtype=bool)

    texts = ["hello", "s2", "x", "s1", "s2"]
    lp, cut = score_by_plan(fake, texts, plan, spec, 3)
    assert lp[:, 0].tolist() == [5, 2, 1, 2, 2]  # in the texts' order
    assert lp[:, 2].tolist() == [0, 0, 0, 0, 0]  # no text is ever one of its own prompt's examples
    assert lp[:, 1].tolist() == [3, 2, 3, 2, 2]  # the examples' own texts: no spare of their class, one fewer
    assert (score_by_plan(fake, texts, None, spec, 3)[0][:, 1] == 0).all()
