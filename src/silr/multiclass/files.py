"""K-class runs from files: the pieces behind ``silr annotate | refine | evaluate | run`` when there are K > 2
classes (the same functions serve the ``silr kclass`` aliases).

* :func:`kclass_classes`: does a label column hold K > 2 classes (and not binary labels or real-valued scores)?
* :func:`annotate_kclass`: K label words, one forward pass per text, the argmax as the pseudo-label.
* :func:`kclass_frames`: the corpus and labeled frames as the refiner's inputs (labeled rows are corpus rows).
* :func:`refine_kclass`: refine and write ``labels.csv``, ``rounds.json`` (T per round), ``report.md``/``.html``.
* :func:`evaluate_kclass`: the separate evaluation step against held-out gold.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from silr.io import InputError
from silr.multiclass.evaluate import evaluate_kclass, is_kclass_run  # noqa: F401 (re-exported)

__all__ = ["LOGP_PREFIX", "class_names", "kept_rows", "left_out_note", "labeled_only_note", "kclass_classes", "is_binary_labels", "kclass_pseudo_classes", "is_kclass_words", "kclass_prompt", "annotate_kclass", "kclass_frames",
           "refine_kclass", "save_model", "is_kclass_run", "evaluate_kclass", "print_kround"]

LOGP_PREFIX = "llm_logp_"
_WHOLE = re.compile(r"[+-]?\d+(\.0*)?")


def class_names(values) -> np.ndarray:
    """Class names as stripped strings, '' where missing; a numeric column of whole numbers gives '1', not '1.0'
    (integer class codes with empty cells, e.g. abstained rows, are read as floats from JSONL/Parquet)."""
    s = pd.Series(values).reset_index(drop=True)
    miss = s.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.all(np.isfinite(v[~miss])) and np.all(v[~miss] == np.round(v[~miss])):
            return np.array(["" if m else str(int(x)) for x, m in zip(v, miss)], dtype=object)
    out = s.astype(str).str.strip().to_numpy(dtype=object)
    out[miss] = ""
    # a CSV column of whole numbers written as floats ('1.0': pandas writes integer codes with empty cells so) names
    # the same classes as a file that writes '1'
    txt = [v for v in out if v != ""]
    if txt and any("." in v for v in txt) and all(_WHOLE.fullmatch(v) for v in txt):
        out = np.array(["" if v == "" else str(int(v.split(".")[0])) for v in out], dtype=object)
    return out


def kclass_classes(values) -> list[str] | None:
    """The sorted class names when ``values`` hold K > 2 classes, else None (binary labels in any spelling that
    :func:`silr.io.parse_binary_labels` reads, or real-valued scores, stay on the binary path)."""
    from silr.io import parse_binary_labels

    s = pd.Series(values).dropna()
    if s.empty or pd.api.types.is_bool_dtype(s):
        return None
    if pd.api.types.is_numeric_dtype(s):
        v = s.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(v)) or not np.all(v == np.round(v)):
            return None  # scores: the binary path (--threshold)
    names = s.astype(str).str.strip()
    names = names[names != ""]
    try:
        parse_binary_labels(names.reset_index(drop=True), what="labels", column="labels")
        return None
    except (InputError, ValueError):
        pass
    u = sorted(set(names))
    return u if len(u) > 2 else None


def is_binary_labels(values) -> bool:
    """Every non-missing value is a binary label in a spelling :func:`silr.io.parse_binary_labels` reads."""
    from silr.io import parse_binary_labels

    s = pd.Series(values).dropna().reset_index(drop=True)
    try:
        parse_binary_labels(s, what="labels", column="labels")
    except (InputError, ValueError):
        return False
    return True


def kclass_pseudo_classes(pseudo, labels) -> list[str] | None:
    """The K > 2 classes of a run from its pseudo-labels and the labeled sample's gold labels, or None (binary).
    The labeled sample decides: 3+ classes there, or pseudo-labels with 3+ classes while the gold labels are not
    binary; binary gold labels keep the binary path (a stray value in a 0/1 pseudo-label column is its error)."""
    found = kclass_classes(labels)
    if found is not None or is_binary_labels(labels):
        return found
    return kclass_classes(pseudo)


def is_kclass_words(label_words: str | Sequence[str] | None) -> bool:
    """``--label-words a,b,c`` with three or more words."""
    if not label_words:
        return False
    words = label_words.split(",") if isinstance(label_words, str) else list(label_words)
    return len([w for w in words if str(w).strip()]) > 2


def kclass_prompt(prompt: str | Path | None, label_words: str | None, instruction: str | None):
    """The K-class prompt when ``label_words`` has 3+ words or ``prompt`` is a file with a list of 3+ label words;
    else None (the binary prompt)."""
    from silr.multiclass.annotate import kprompt_from_words, load_kprompt

    if is_kclass_words(label_words):
        return kprompt_from_words(label_words, instruction)
    if prompt is None or label_words is not None:
        return None
    p = Path(prompt)
    if not p.is_file() or p.suffix.lower() not in (".toml", ".json"):
        return None
    try:
        if p.suffix.lower() == ".json":
            words = json.loads(p.read_text(encoding="utf-8")).get("label_words")
        else:
            import tomllib

            words = tomllib.loads(p.read_text(encoding="utf-8")).get("label_words")
    except (OSError, ValueError, AttributeError):
        return None  # the binary loader reports what is wrong with the file
    if not isinstance(words, list) or len(words) < 3:
        return None
    spec = load_kprompt(p)
    if instruction:
        from dataclasses import replace

        spec = replace(spec, instruction=instruction)
    return spec


def annotate_kclass(df: pd.DataFrame, text_col: str, spec, *, model: str, what: str, cache_dir=None,
                    batch_size: int = 8, max_text_tokens: int = 256, center: bool = False,
                    on_batch: Callable | None = None, server: dict | None = None,
                    shots_from=None, shots: int = 0, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """``df`` plus ``llm_label`` (the argmax word; also ``pseudo_label``) and ``llm_logp_<word>`` per class
    (log-probabilities normalised over the K words), and a record of the run. ``model`` ``openai:NAME`` scores with
    an OpenAI-compatible server (``server``: base_url, api_key, api, concurrency, timeout; scores cached in
    ``cache_dir``); a text the server's answer gives no label word gets an empty label and NaN scores.
    ``shots_from``: ``(texts, labels, what)`` of the labeled sample; with ``shots`` > 0 the prompt gets that many
    examples from it (rounded up to the same number per class; :class:`~silr.multiclass.shots.KShotPlan`), each
    example's own text labelled without itself."""
    from silr.io import clean_texts
    from silr.multiclass.annotate import center_scores
    from silr.multiclass.shots import KShotPlan, score_by_plan

    texts = clean_texts(df[text_col], what=what, column=text_col)
    kinds = None
    plan = None
    if shots and shots_from is not None:
        plan = KShotPlan(spec, shots_from[0], shots_from[1], shots=shots, seed=seed, what=shots_from[2])
    if str(model).startswith("openai:"):
        from silr.annotate.cache import CACHE_FILE, ScoreCache
        from silr.annotate.factory import make_annotator
        from silr.multiclass.server import server_kclass_scores

        annotator = make_annotator(str(model), **(server or {}))
        cache = ScoreCache(Path(cache_dir) / CACHE_FILE) if cache_dir is not None else None
        try:
            lp, cut, kinds = score_by_plan(lambda ts, p, cb: server_kclass_scores(annotator, ts, p, cache=cache,
                                                                                  on_batch=cb),
                                           texts, plan, spec, spec.K, on_batch)
        finally:
            annotator.close()
            if cache is not None:
                cache.close()
    else:
        from silr.annotate.local import LocalLMScorer
        from silr.multiclass.annotate import kclass_scores

        kw = {"cache_dir": cache_dir} if cache_dir is not None else {}
        scorer = LocalLMScorer(model, batch_size=batch_size, max_text_tokens=max_text_tokens, **kw)
        lp, cut = score_by_plan(lambda ts, p, cb: kclass_scores(scorer, ts, p, on_batch=cb), texts, plan, spec,
                                spec.K, on_batch)
    words = list(spec.label_words)
    out = df.copy()
    ok = ~np.isnan(lp).any(1)
    ref = center_scores(lp[ok]) if center else lp[ok]
    lab = np.full(len(texts), "", dtype=object)
    lab[ok] = [words[i] for i in ref.argmax(1)]
    out["llm_label"] = lab
    for j, w in enumerate(words):
        out[f"{LOGP_PREFIX}{w}"] = lp[:, j]
    record = {"kind": "kclass", "model": str(model), "prompt": (plan.main if plan else spec).to_dict(),
              "centered": bool(center),
              "counts": {"rows": len(texts), "truncated": int(cut.sum()), "abstained": int((~ok).sum()),
                         "per_class": {w: int(sum(x == w for x in lab)) for w in words}}}
    if kinds is not None:
        record["counts"]["by_kind"] = kinds
    if plan is not None:
        record["shots"] = {"requested": int(shots), "per_class": plan.per_class,
                           "labeled_rows": [i + 1 for i in plan.example_rows], "notes": plan.notes}
    return out, record


def kclass_frames(df: pd.DataFrame, ldf: pd.DataFrame, *, pseudo_col: str, text_col: str, label_col: str,
                  score_prefix: str | None, corpus: str, labeled: str):
    """``(texts, y, gold, llm, classes, keep)``: corpus texts, LLM labels, gold (None off the labeled rows), the
    LLM's per-class scores (or None) and the sorted class names, of the corpus rows ``keep`` (a boolean mask over
    ``df``'s rows). A row with no LLM label (the LLM abstained: ``silr annotate`` leaves it empty, with NaN scores)
    is left out, as the binary path leaves out abstained rows; a labeled text among them is an error. Every problem
    names the file, column and row."""
    from silr.io import clean_texts

    for frame, cols, name in ((df, [text_col, pseudo_col], f"corpus file '{corpus}'"),
                              (ldf, [text_col, label_col], f"labeled file '{labeled}'")):
        for c in cols:
            if c not in frame.columns:
                raise InputError(f"{name} has no column '{c}'")
    texts_all = clean_texts(df[text_col], what=f"corpus file '{corpus}'", column=text_col)
    ltexts = clean_texts(ldf[text_col], what=f"labeled file '{labeled}'", column=text_col)
    raw = df[pseudo_col][df[pseudo_col].astype(str).str.strip() != ""].dropna()
    num = pd.to_numeric(raw, errors="coerce")
    if len(raw) and num.notna().all() and not (num == num.round()).all():
        raise InputError(f"corpus file '{corpus}': column '{pseudo_col}' holds real-valued scores, not the LLM's class "
                         "labels: give the column of labels (e.g. llm_label) as the pseudo-labels and the per-class "
                         "scores as --score-col PREFIX")
    y_all = class_names(df[pseudo_col])
    keep = y_all != ""
    if not keep.any():
        raise InputError(f"corpus file '{corpus}': column '{pseudo_col}' is empty on every row (no LLM label to refine)")
    missing_texts: dict = {}
    for i in np.flatnonzero(~keep):
        missing_texts.setdefault(texts_all[i], int(i))  # the first corpus row of the text
    kept_texts = {t for t, k in zip(texts_all, keep) if k}
    for j, t in enumerate(ltexts):
        if t in missing_texts and t not in kept_texts:
            raise InputError(f"labeled file '{labeled}': row {j + 2} is corpus row {missing_texts[t] + 2}, which has no "
                             f"LLM label in column '{pseudo_col}' (the LLM abstained on it): re-score it or drop it "
                             "from the labeled file")
    texts, y = [t for t, k in zip(texts_all, keep) if k], y_all[keep]
    gold_lab = class_names(ldf[label_col])
    if (gold_lab == "").any():  # NaN, or an empty cell of a CSV (read as '')
        raise InputError(f"labeled file '{labeled}': column '{label_col}' is empty on row {int(np.flatnonzero(gold_lab == '')[0]) + 2}")
    classes = sorted(set(y) | set(gold_lab))
    only = sorted(set(gold_lab) - set(y))  # classes no LLM label names
    if only:
        llm_cls = _some(sorted(set(y)))
        row = int(np.flatnonzero(gold_lab == only[0])[0]) + 2
        if not set(gold_lab) & set(y):
            raise InputError(f"labeled file '{labeled}': its classes in column '{label_col}' ({_some(sorted(set(gold_lab)))}) "
                             f"are none of the LLM's labels in column '{pseudo_col}' of corpus file '{corpus}' ({llm_cls}): "
                             "the two files must name the classes alike")
        if len(set(y)) < 3 and not score_prefix:
            raise InputError(f"labeled file '{labeled}': class {only[0]!r} (row {row}) is none of the LLM's labels in column "
                             f"'{pseudo_col}' of corpus file '{corpus}', which name only {len(set(y))} classes ({llm_cls}): "
                             "check its spelling, or give the LLM's per-class scores (--score-col PREFIX; [data] score_col in "
                             "silr run) so that round 0 can name it")
    llm = None
    if score_prefix:
        cols = [f"{score_prefix}{c}" for c in classes]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise InputError(f"corpus file '{corpus}' has no column '{missing[0]}' (score prefix {score_prefix}: one column per class)")
        from silr.multiclass.persist import score_matrix

        # an abstained row's scores are NaN: it is left out, so its cells are not checked (rows keep their numbers)
        sdf = df[cols].astype(object).where(np.repeat(keep[:, None], len(cols), axis=1), 0.0)
        llm = score_matrix(sdf, cols, what=f"corpus file '{corpus}'", option=f"--score-col {score_prefix}")[keep]
    # the labeled rows: the corpus row with the same text (its LLM label)
    where: dict = {}
    for i, t in enumerate(texts):
        where.setdefault(t, i)
    idx = [where.get(t, -1) for t in ltexts]
    if min(idx, default=0) < 0:
        j = idx.index(-1)
        raise InputError(f"labeled file '{labeled}': row {j + 2} has a text that is not in the corpus; K-class refinement "
                         "needs each labeled row's LLM label (add it to the corpus)")
    gold = np.full(len(texts), None, dtype=object)
    for j, i in enumerate(idx):
        if gold[i] is not None and gold[i] != gold_lab[j]:
            raise InputError(f"labeled file '{labeled}': row {j + 2} gives text already labeled {gold[i]!r} another label {gold_lab[j]!r}")
        gold[i] = gold_lab[j]
    return texts, y, gold, llm, classes, keep


def _some(names, k: int = 8) -> str:
    """The first ``k`` names, comma-separated ('...' when there are more)."""
    return ", ".join(map(str, names[:k])) + (f", ... ({len(names)} in all)" if len(names) > k else "")


def print_kround(rec: dict) -> None:
    """One line per K-class round on stderr."""
    import typer

    if "T" in rec:
        lo, hi = rec["accuracy_interval"]
        typer.echo(f"round {rec['round']}: est.acc {rec['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] cond(T) {rec['condition']:.1f}"
                   + (f" changed={rec['n_changed']}" if rec.get("n_changed") is not None else ""), err=True)


def refine_kclass(df: pd.DataFrame, ldf: pd.DataFrame, out: Path, *, pseudo_col: str, text_col: str = "text",
                  label_col: str = "label", score_prefix: str | None = None, rounds: int = 5, seed: int = 0,
                  backbone: str = "minilm", cache_dir=None, progress: bool = True, report: bool = True,
                  corpus: str = "corpus", labeled: str = "labeled", on_round: Callable | None = None,
                  keep_files: Sequence[str] = ()) -> dict:
    """Refine K-class LLM labels and write the run folder ``out`` (built beside it and moved into place; an earlier
    folder there is replaced whole, but for its entries ``keep_files``, written by the same job): ``labels.csv``
    (text, llm_label, label, round_1..), ``rounds.json`` (T per round with intervals, confusion on the labeled
    rows), ``model/`` (the refiner and the backbone, for ``silr predict``) and ``report.md``/``report.html``.
    Returns the summary."""
    from silr.backbones import get_backbone
    from silr.io import atomic_write_text, json_default, write_table
    from silr.multiclass.report import report_html, report_markdown, run_summary
    from silr.refine import SelfIterativeRefiner

    texts, y, gold, llm, classes, keep = kclass_frames(df, ldf, pseudo_col=pseudo_col, text_col=text_col,
                                                       label_col=label_col, score_prefix=score_prefix,
                                                       corpus=corpus, labeled=labeled)
    if len(classes) < 3:
        raise InputError(f"{len(classes)} classes ({', '.join(classes)}): two classes take the binary path")
    kw = {"progress": progress}
    if cache_dir is not None:
        kw["cache_dir"] = cache_dir
    bb = get_backbone(backbone, **kw)
    bb.fit(texts)  # an unsupervised fit on the corpus texts (ngram's vocabulary; a no-op for encoders)
    X = bb.transform(texts)
    model = SelfIterativeRefiner(rounds=rounds, seed=seed).fit(X, y, y_gold=gold, llm_score=llm, on_round=on_round)
    lab = np.flatnonzero(np.array([g is not None for g in gold]))
    y_lab = np.searchsorted(model.classes_, gold[lab].astype(str))
    summary = run_summary(model, lab, y_lab)
    # rows without an LLM label (abstained) are not in the run: labels.csv and the evaluation cover the others
    summary["rows_left_out"] = {"count": int((~keep).sum()), "rows": [int(i) + 2 for i in np.flatnonzero(~keep)],
                                "why": f"no LLM label in column '{pseudo_col}' (the LLM abstained)"}
    gold_names = class_names(ldf[label_col])
    only = sorted(set(gold_names) - set(y))
    if only:  # a class no LLM label names (a misspelling?): the rounds start only if round 0 names it
        summary["labeled_only_classes"] = {c: [int(j) + 2 for j in np.flatnonzero(gold_names == c)] for c in only}
    res = df.loc[keep, [text_col]].copy()
    res["llm_label"] = y
    res["label"] = model.transduction_
    if str(model.round0_labeled_).startswith("calibrated"):  # round 0 is the LLM's scores read through the labeled rows
        res["round0_calibrated"] = model.classes_[model.labels_[0]]
    for r in range(1, model.n_rounds_ + 1):
        res[f"round_{r}"] = model.classes_[model.labels_[r]]
    # built beside ``out`` and moved into place complete: an earlier run's files (--overwrite) do not stay beside it
    from silr.run_folder import staged_folder

    with staged_folder(out, keep_files) as tmp:
        write_table(res, tmp / "labels.csv")
        save_model(model, bb, tmp / "model")
        atomic_write_text(tmp / "rounds.json", json.dumps(summary, indent=1, default=json_default))
        atomic_write_text(tmp / "report.md", report_markdown(summary))
        if report:
            atomic_write_text(tmp / "report.html", report_html(summary))
    return summary


def save_model(model, backbone, folder: Path) -> None:
    """The fitted K-class refiner and its backbone in ``folder`` (as the binary run's ``model/``), written beside
    it and moved into place when complete."""
    import shutil

    tmp = folder.parent / f".{folder.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    backbone.save(tmp)
    (tmp / "backbone.json").write_text(json.dumps(backbone.spec(), indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def kept_rows(summary: dict, n: int) -> np.ndarray:
    """The mask of a run's ``n`` corpus rows that it kept (``rounds.json`` ``rows_left_out`` lists the others as
    file rows: header = row 1)."""
    keep = np.ones(n, dtype=bool)
    keep[np.asarray((summary.get("rows_left_out") or {}).get("rows") or [], dtype=np.int64) - 2] = False
    return keep


def left_out_note(summary: dict) -> str | None:
    """The note for the rows a run left out (no LLM label), or None when it kept every row."""
    left = summary.get("rows_left_out") or {}
    if not left.get("count"):
        return None
    return (f"note: {left['count']} rows with no LLM label (abstained) are left out of the refinement and of "
            f"labels.csv (file rows {', '.join(map(str, left['rows'][:10]))}" + (", ..." if left["count"] > 10 else "")
            + ")")


def labeled_only_note(summary: dict) -> str | None:
    """The note for the labeled file's classes that no LLM label names, or None."""
    only = summary.get("labeled_only_classes") or {}
    if not only:
        return None
    what = "; ".join(f"{c!r} (labeled file rows {', '.join(map(str, r[:5]))}{', ...' if len(r) > 5 else ''})"
                     for c, r in only.items())
    return (f"note: class(es) named by the labeled file but by no LLM label: {what}. A misspelling? The rounds "
            "start only when round 0's labels name every class (rounds.json 'stop_reason')")
