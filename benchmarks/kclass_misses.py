"""Diagnosis of the K-class held-out misses (an evaluation with the corpus gold, after the eighth version's runs; no
default is chosen from it): for every held-out cell in the target's range where silr K-class is more than 1 point
below the best baseline outside the labeled budget, refit silr's default (`kclass_tune` variant v7, which reproduces
the benchmark's silr figures) per seed and record what the hand-back saw: each candidate's accuracy outside the
labeled budget, the labeled rows each is right on, the bootstrap probability that the stack beats the LLM's labels,
and on how many labeled rows the two disagree. ``python benchmarks/kclass_misses.py`` writes
results/kclass_misses/misses.json.
"""
import json, sys, glob, numpy as np
sys.path.insert(0, 'benchmarks')
import kclass_bench as kb, kclass_tune as kt
from kclass_table import SEEN, FRESH
held = set(SEEN) | set(FRESH)
BASE = ("llm", "lr_labeled", "lr_balanced", "cleanlab", "ovr_binary")
cells = {}
for p in glob.glob('benchmarks/results/kclass/*.json'):
    r = json.load(open(p))
    if r['task'] not in held: continue
    cells.setdefault((r['task'], r['setting'], r['budget']), []).append(r)
fail = []
for k, rs in cells.items():
    if len(rs) < 3: continue
    if not (0.5 <= np.mean([r['llm']['corpus_acc'] for r in rs]) <= 0.8): continue
    bm = max(BASE, key=lambda m: np.mean([r[m]['unlabeled_acc'] for r in rs]))
    marg = np.mean([r['silr_k']['unlabeled_acc'] for r in rs]) - np.mean([r[bm]['unlabeled_acc'] for r in rs])
    if marg < -0.01: fail.append((k, bm, marg))
print(len(fail), 'failing cells')
out = []
for (tname, setting, b), bm, marg in sorted(fail):
    task0 = kb._task(tname); Fc0, Ft0 = kb._features(task0)
    task, Fc, Ft = kb._subset(task0, setting, Fc0, Ft0)
    y = task.corpus_y
    row = []
    for seed in (0, 1, 2):
        s, st, lp, lpt = kb._llm(task, setting, seed, Fc, Ft)
        lab = np.sort(np.random.default_rng(seed).choice(y.size, b, replace=False))
        f = kt.fit_variant(Fc, s, lab, y[lab], len(task.classes), dict(kt.VARIANTS["v7"]), seed, llm=lp)
        cl = f.extra["candidate_labels"]
        una = {k: float(np.mean(np.delete(L == y, lab))) for k, L in cl.items()}
        rec = json.load(open(f'benchmarks/results/kclass/{tname}__{setting}__s{seed}__b{b}.json'))
        tab = f.candidates
        row.append(dict(seed=seed, chosen=f.source, una=una, best=rec[bm]['unlabeled_acc'], silr=rec['silr_k']['unlabeled_acc'],
                        right={k: v['n_right'] for k, v in tab.items()}, p={k: v['prob_better_than_default'] for k, v in tab.items()},
                        disagree=int(np.sum(cl['llm'][lab] != cl['stack'][lab])) if 'stack' in cl else None))
    out.append(dict(task=tname, setting=setting, budget=b, best_method=bm, margin=marg, seeds=row))
    print(tname, setting, b, bm, '%+.3f' % marg)
    for r in row:
        print('   s%d chosen %-5s silr %.3f best %.3f | llm %.3f stack %.3f | right %s p %s disagree %s' % (
            r['seed'], r['chosen'], r['silr'], r['best'], r['una'].get('llm', np.nan), r['una'].get('stack', np.nan), r['right'],
            {k: (None if v is None else round(v, 2)) for k, v in r['p'].items()}, r['disagree']))
from pathlib import Path
dest = Path('benchmarks/results/kclass_misses/misses.json')
tmp = dest.with_suffix('.tmp')
tmp.write_text(json.dumps(out, indent=1))
tmp.replace(dest)
