"""How the not-started fallback was chosen: four hand-back variants on every run where silr's loop did not start
(the suite's real-LLM track and the fine-tuning track's silr_frozen runs), test accuracy, nothing else rerun.

    python benchmarks/notstarted_variants.py benchmarks/results/notstarted_variants.json

Variants (the same candidates and paired bootstrap as silr.selection): old = the probe on the labeled rows by
default, the LLM's labels (judged in sample) as the challenger; V1 (adopted) = a stack of the LLM score and the
probe's out-of-fold score by default, the LLM's labels (threshold judged out of fold) as the challenger; V2 = the
probe by default, the LLM and the stack as challengers; V3 = V1 with the probe as a challenger too. Which runs did
not start is read from the stored runs (the start gate does not depend on the hand-back). Gold beyond the 50
labeled rows is read only to score the test split.
"""
import json, sys, glob, os
import numpy as np
from pathlib import Path
from silr.bench.runner import RunConfig
from silr.bench.data import load_task, task_features
from silr.bench.finetune_track import cell_inputs, track_features
from silr.selection.candidates import (Candidate, probe_scores, probe_candidate, stack_candidate, probe_decision,
                                       select, threshold_oof_correct)
B = Path(__file__).resolve().parent
cells = []
for f in sorted(glob.glob(str(B / 'results/main/llm/*.json'))):
    d = json.load(open(f)); i = d['methods']['silr']['info']
    if i.get('n_rounds') == 0 and i.get('stop_reason') == 'not_started':
        cells.append(('suite', d['dataset'], d['seed'], str(B / 'llm_scores'), d['setting'].split('@')[1]))
for f in sorted(glob.glob(str(B / 'results/finetune/*/*__seed?.json'))):
    d = json.load(open(f)); m = d['methods'].get('silr_frozen')
    if not m or m['info'].get('n_rounds') != 0 or m['info'].get('stop_reason') != 'not_started':
        continue
    tag = f.split('/')[-2]
    c = ('ft:' + tag, d['dataset'], d['seed'], (d.get('llm_scores') or {}).get('dir') or str(B / 'llm_scores'), d.get('features') or 'minilm')
    if c not in cells:
        cells.append(c)
out = {}
for src, name, seed, sdir, feats in cells:
    inp = cell_inputs(name, seed, Path(sdir))
    if src == 'suite':
        task = load_task(name, max_corpus=2000, max_test=500)
        bname = RunConfig(datasets=[name]).backbone.get(name) if feats == 'encoder' else feats
        Xc, Xt, _ = task_features(task, bname, prompts_dir=B / 'prompts')
        Xc, Xt = np.asarray(Xc) if not hasattr(Xc, 'tocsr') else Xc, Xt
    else:
        inp['features'] = feats
        meta = Path(sdir) / f'{name}.json'
        inp['shots'] = json.loads(meta.read_text()).get('n_shots', 4) if meta.is_file() else 4
        Xc, Xt = track_features(inp)
    y, yt, lab, s, st = inp['y'], inp['yt'], inp['lab'], inp['s'], inp['s_test']
    ev, evt = inp['llm_score'], inp['llm_score_test']
    yl = y[lab]
    pc, pl, probe = probe_scores(Xc[lab], yl, Xc)
    pt = probe_decision(probe, Xt)
    c_llm_in = Candidate('llm', s, s[lab] == yl)
    c_llm = Candidate('llm', s, threshold_oof_correct(ev[lab], yl))
    c_probe = probe_candidate(Xc[lab], yl, Xc)
    c_stack = stack_candidate(ev, ev[lab], None, None, yl, probe_score=pc, probe_score_lab=pl)
    stk = c_stack.extra['stack']
    F = (np.column_stack([evt, pt]) - stk['mean']) / stk['std']
    test = {'llm': np.mean(st == yt), 'probe': np.mean((pt > 0) == yt),
            'stack': np.mean(((F @ np.array(stk['coef']) + stk['intercept']) > 0) == yt)}
    kw = dict(confidence=0.9, n_bootstrap=2000, seed=seed + 7919)
    v = {'old': select([c_llm_in, c_probe], 'probe', **kw)[0].name,
         'V1 stack default': select([c_llm, c_stack], 'stack', **kw)[0].name,
         'V2 probe default, stack challenger': select([c_llm, c_probe, c_stack], 'probe', **kw)[0].name,
         'V3 stack default, probe challenger': select([c_llm, c_probe, c_stack], 'stack', **kw)[0].name}
    res = {k: (n, float(test[n])) for k, n in v.items()}
    res['_'] = {'test': {k: float(x) for k, x in test.items()}, 'oof_right': {c.name: int(c.correct.sum()) for c in (c_llm, c_probe, c_stack)},
                'coef': stk['coef']}
    out[f'{src}|{name}|{seed}|{feats}'] = res
    print(src, name, seed, feats, {k: f'{n} {t:.3f}' for k, (n, t) in ((k, r) for k, r in res.items() if k != '_')}, res['_']['oof_right'], flush=True)
Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
from silr.bench.groups import TUNING
for group, keep in (("tuning", True), ("held out", False)):
    ks = [k for k in out if (k.split('|')[1] in TUNING) == keep]
    print(group, len(ks), 'runs:', ', '.join(f"{v} {np.mean([out[k][v][1] for k in ks]):.4f}" for v in
                                          ['old', 'V1 stack default', 'V2 probe default, stack challenger',
                                           'V3 stack default, probe challenger']))
