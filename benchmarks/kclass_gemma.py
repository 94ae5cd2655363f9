"""Gemma-3-270M K-class labels for the K-class benchmark: one forward pass per text, zero-shot, K label words.

For each task a fixed random subsample of the benchmark corpus and test rows (``--n-corpus``/``--n-test``, seed 0)
is scored; per-class log-probabilities normalised over the K words are stored in
benchmarks/results/kclass_gemma/<task>.npz with the row indices (resumable: partial chunks are kept in a
``.partial.npz`` and reused). No gold label is read here.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "kclass_gemma"
INSTRUCTIONS = {
    "reuters_r8": "What is the topic of this Reuters news text?",
    "newsgroups6": "What is the topic of this newsgroup post?",
    "slo_opinion": "Is the sentiment of this Slovenian comment negative, neutral or positive?",
    "amazon3": "Is the sentiment of this Amazon product review snippet negative, neutral or positive?",
    "newsgroups8c": "What is the topic of this newsgroup post?",
    "tweets3": "Is the sentiment of this tweet negative, neutral or positive?",
    "movies3": "Is the sentiment of this movie review snippet negative, neutral or positive?",
    "nyt3": "Is the sentiment of this New York Times editorial snippet negative, neutral or positive?",
    "reuters6x": "What is the topic of this Reuters news text?",
    # fixed with the rt3 definition, before any run on it
    "rt3": "Is this movie text a positive review, a negative review or a plot description?",
    # fixed with the debates3 definition, before any run on it
    "debates3": "Who said this in a 2016 US presidential debate: a republican, a democrat or the moderator?",
    # fixed with the trec6 definition, before any run on it
    "trec6": "What does this question ask for: an abbreviation, a description, a thing, a person, a place or a number?",
    # fixed with the trecnum and reuters6y definitions, before any run on them
    "trecnum": "What kind of number does this question ask for: a count, a date, a duration or an amount of money?",
    "reuters6y": "What is the topic of this Reuters news text: cocoa, jobs, reserves, industry, aluminium or copper?",
    # fixed with the trecenty and trecdesc definitions, before any run on them
    "trecenty": ("What kind of thing does this question ask for: a creative work, an animal, a food, a disease "
                 "or a term?"),
    "trecdesc": "What does this question ask for: a definition, a manner, a description or a reason?",
    # fixed with the trecloc and reuters6z definitions, before any run on them
    "trecloc": "What kind of place does this question ask for: a country, a city or a state?",
    "reuters6z": "What is the topic of this Reuters news text: rubber, steel, gas, payments, retail or vegetable?",
}


def main():
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", nargs="*", default=list(INSTRUCTIONS))
    ap.add_argument("--n-corpus", type=int, default=800)
    ap.add_argument("--n-test", type=int, default=400)
    ap.add_argument("--max-text-tokens", type=int, default=96)
    a = ap.parse_args()
    torch.set_num_threads(1)
    from silr.annotate.local import LocalLMScorer
    from silr.multiclass.annotate import kclass_scores, kprompt_from_words

    sys_path = str(ROOT)
    import sys

    sys.path.insert(0, sys_path)
    from kclass_bench import _task

    OUT.mkdir(parents=True, exist_ok=True)
    scorer = LocalLMScorer(batch_size=8, max_text_tokens=a.max_text_tokens)
    for name in a.tasks:
        final = OUT / f"{name}.npz"
        if final.exists():
            continue
        task = _task(name)
        rng = np.random.default_rng(0)
        ci = np.sort(rng.permutation(len(task.corpus_text))[: a.n_corpus])
        ti = np.sort(rng.permutation(len(task.test_text))[: a.n_test])
        texts = [task.corpus_text[i] for i in ci] + [task.test_text[i] for i in ti]
        prompt = kprompt_from_words(task.classes, INSTRUCTIONS[name])
        part = OUT / f"{name}.partial.npz"
        lp = np.full((len(texts), len(task.classes)), np.nan)
        if part.exists():
            lp = np.load(part)["logp"]
        t0 = time.time()
        for start in range(0, len(texts), 80):
            if not np.isnan(lp[start:start + 80]).any():
                continue
            lp[start:start + 80] = kclass_scores(scorer, texts[start:start + 80], prompt)[0]
            np.savez(str(part) + ".tmp.npz", logp=lp)
            os.replace(str(part) + ".tmp.npz", part)
            print(f"{name}: {min(start + 80, len(texts))}/{len(texts)} ({time.time() - t0:.0f}s)", flush=True)
        n = ci.size
        np.savez(str(final) + ".tmp.npz", corpus_idx=ci, test_idx=ti, corpus_logp=lp[:n], test_logp=lp[n:],
                 words=np.array(task.classes), instruction=INSTRUCTIONS[name], max_text_tokens=a.max_text_tokens)
        os.replace(str(final) + ".tmp.npz", final)
        part.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
