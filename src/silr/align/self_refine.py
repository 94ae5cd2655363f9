"""Self-refinement of generations: the LLM judges its own answers, silr refines the judgements."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from silr.align.best_of_n import pick_best
from silr.align.policy import build_prompt, sample_answers
from silr.reward import QA_TEMPLATE


_INT = re.compile(r"-?\d[\d,]*")


def numeric_check(answer: str, gold: Any) -> bool:
    """True when the first integer in ``answer`` equals ``gold`` (commas ignored)."""
    m = _INT.search(str(answer))
    if not m:
        return False
    try:
        return int(m.group(0).replace(",", "")) == int(str(gold).strip().replace(",", ""))
    except ValueError:
        return False


JUDGE_INSTRUCTION = ("Each item is a question and a proposed answer. Decide whether the answer is correct. "
                     "Reply {positive} if it is correct, {negative} if it is wrong.")


@dataclass
class SelfRefineResult:
    questions: list[str]
    samples: list[list[str]]
    correct: np.ndarray      # (questions, n) bool, from the checker (evaluation only, except labeled rows)
    llm_score: np.ndarray    # (questions, n) the LLM's own judgement (round 0)
    refined_score: np.ndarray  # (questions, n) silr's refined classifier
    labeled_questions: np.ndarray  # bool per question: its answers were the gold-checked sample
    picks: dict[str, np.ndarray] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    refine_summary: dict = field(default_factory=dict)
    seconds: float = 0.0

    def table(self) -> dict:
        return {"n_questions_eval": int((~self.labeled_questions).sum()), "accuracy": self.accuracy,
                "final_source": self.refine_summary.get("final_source"),
                "selection": self.refine_summary.get("selection")}


def _majority(samples: list[str]) -> int:
    keys = []
    for s in samples:
        m = _INT.search(s)
        keys.append(m.group(0) if m else s.strip().lower())
    counts = {k: keys.count(k) for k in keys}
    return int(max(range(len(keys)), key=lambda i: (counts[keys[i]], -i)))


def self_refine_answers(model, tokenizer, questions: Sequence[str], gold: Sequence[Any], *, n: int = 4,
                        n_labeled: int = 50, check: Callable[[str, Any], bool] = numeric_check,
                        instruction: str = JUDGE_INSTRUCTION, label_words: tuple[str, str] = ("yes", "no"),
                        backbone: str = "minilm", rounds: int = 3, seed: int = 0, max_new_tokens: int = 12,
                        samples: Sequence[Sequence[str]] | None = None, template: str = QA_TEMPLATE,
                        cache_dir: str | os.PathLike | None = None, progress: bool = True,
                        sample_kw: dict | None = None) -> SelfRefineResult:
    """Self-refinement of generations (paper's second use).

    1. ``n`` answers are sampled per question;
    2. the same LLM judges each (question, answer) (round 0: ``log p(yes) - log p(no)`` with ``instruction``,
       threshold fitted on the gold-checked sample, 4 shots from it);
    3. the answers of the first ``ceil(n_labeled / n)`` questions are checked against ``gold`` (``check``):
       that is the labeled sample; silr refines the LLM's judgements on frozen ``backbone`` features;
    4. per question the answer with the highest refined score is kept.

    Accuracy is reported on the other questions only, for: the first sample (the policy), majority vote
    (self-consistency), the LLM-judge's pick, silr's pick, and the oracle (any correct answer).
    """
    import pandas as pd

    from silr.annotate.local import LocalLMScorer
    from silr.annotate.prompts import spec_from_instruction
    from silr.annotate.run import annotate_frame
    from silr.inputs import RefineInputs
    from silr.texts import refine_texts

    t0 = time.time()
    questions = list(questions)
    if samples is None:
        samples = sample_answers(model, tokenizer, questions, n=n, max_new_tokens=max_new_tokens, seed=seed,
                                 template=template, progress=progress, **(sample_kw or {}))
    samples = [list(s) for s in samples]
    n = len(samples[0])
    Q = len(questions)
    correct = np.array([[bool(check(a, g)) for a in s] for s, g in zip(samples, gold)])
    texts = [f"{build_prompt(q, template)} {a}" for q, s in zip(questions, samples) for a in s]
    k_lab = min(Q - 1, -(-n_labeled // n))
    lab_q = np.zeros(Q, dtype=bool)
    lab_q[:k_lab] = True
    lab_rows = np.repeat(lab_q, n)
    y = correct.ravel().astype(int)
    if y[lab_rows].min() == y[lab_rows].max():
        raise ValueError("the gold-checked sample has one class only (all answers right or all wrong); "
                         "label more questions")

    # round 0: the LLM judges its own answers
    spec = spec_from_instruction(instruction, list(label_words))
    scorer = LocalLMScorer("policy", model_obj=model, tokenizer=tokenizer, batch_size=16)
    df = pd.DataFrame({"text": texts})
    labeled = pd.DataFrame({"text": np.asarray(texts, dtype=object)[lab_rows], "label": y[lab_rows]})
    # the duplicate texts (same answer twice) are scored once; the annotator is given unique texts
    ann, rec = annotate_frame(df, "text", scorer, spec, labeled=labeled.drop_duplicates("text"), shots=4,
                              threshold="accuracy", progress=progress, seed=seed)
    llm = ann["llm_score"].to_numpy(dtype=float)
    pseudo = ann["pseudo_label"].fillna(0).to_numpy().astype(np.int8)
    if pseudo.min() == pseudo.max():  # the method needs both pseudo classes: fall back to the median split
        pseudo = (llm > np.median(llm)).astype(np.int8)

    inputs = RefineInputs(list(texts), pseudo, list(np.asarray(texts, dtype=object)[lab_rows]),
                          y[lab_rows].astype(np.int8), pseudo[lab_rows], llm_score=llm,
                          labeled_llm_score=llm[lab_rows])
    res = refine_texts(inputs, backbone=backbone, rounds=rounds, seed=seed, progress=progress,
                       cache_dir=cache_dir)
    refined = res.labels["score"].to_numpy(dtype=float)

    L = llm.reshape(Q, n)
    Rf = refined.reshape(Q, n)
    picks = {
        "first_sample": np.zeros(Q, dtype=int),
        "majority_vote": np.array([_majority(s) for s in samples]),
        "llm_judge": pick_best(L),
        "silr_refined": pick_best(Rf),
    }
    ev = ~lab_q
    acc = {k: float(correct[np.arange(Q), p][ev].mean()) for k, p in picks.items()}
    acc["oracle_any_correct"] = float(correct[ev].any(axis=1).mean())
    acc["mean_over_samples"] = float(correct[ev].mean())
    from sklearn.metrics import roc_auc_score

    yv = correct[ev].ravel()
    if yv.min() != yv.max():
        acc["auc_llm_judge"] = float(roc_auc_score(yv, L[ev].ravel()))
        acc["auc_silr_refined"] = float(roc_auc_score(yv, Rf[ev].ravel()))
    summ = {k: res.summary.get(k) for k in ("final_source", "selection", "stop_reason", "n_rounds")}
    summ["llm_threshold"] = rec["threshold"]
    return SelfRefineResult(questions, samples, correct, L, Rf, lab_q, picks, acc, summ, time.time() - t0)
