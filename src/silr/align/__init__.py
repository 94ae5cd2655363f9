"""Aligning a causal LM with a silr reward model, and self-refinement of generations.

* :func:`best_of_n` -- sample ``n`` answers per prompt, keep the one the reward ranks highest;
* :func:`preference_pairs` + :func:`train_dpo` -- chosen = highest reward, rejected = lowest among the ``n``,
  then DPO (TRL ``DPOTrainer``) with a LoRA adapter (peft); checkpoints every ``save_steps`` and resumes from
  the last one found in the output folder;
* :func:`self_refine_answers` -- the paper's second use: the LLM judges its own answers (round 0, via
  :class:`~silr.annotate.local.LocalLMScorer`), silr refines those judgements with a few gold-checked
  answers, and the answer the refined classifier prefers is kept;
* :func:`run_align` -- the ``silr align`` command's work (files in, run folder out).

Prompts are wrapped with a base-model friendly template, ``"Question: {prompt}\\nAnswer:"`` (Gemma-3-270M is
a base model, not a chat model); answers are cut at the next ``"\\nQuestion:"`` or blank line.
"""


from silr.align.best_of_n import BestOfN, best_of_n, pick_best, score_samples
from silr.align.command import run_align
from silr.align.dpo import last_checkpoint, preference_pairs, train_dpo
from silr.align.policy import DEFAULT_STOPS, QA_TEMPLATE, build_prompt, clean_answer, load_policy, sample_answers
from silr.align.self_refine import SelfRefineResult, numeric_check, self_refine_answers

__all__ = [
    "QA_TEMPLATE",
    "DEFAULT_STOPS",
    "load_policy",
    "build_prompt",
    "clean_answer",
    "sample_answers",
    "pick_best",
    "score_samples",
    "BestOfN",
    "best_of_n",
    "preference_pairs",
    "train_dpo",
    "last_checkpoint",
    "numeric_check",
    "SelfRefineResult",
    "self_refine_answers",
    "run_align",
]
