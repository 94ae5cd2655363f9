"""``silr kclass annotate | refine | evaluate``: K-class labeling from one LLM pass (silr.multiclass).

* ``annotate``: K label words (``--label-words a,b,c`` or ``--prompt FILE``), one forward pass per text with a
  local causal LM; writes the label word (``llm_label``) and ``llm_logp_<word>`` per class (log-probabilities
  normalised over the K words).
* ``refine``: the corpus with its LLM labels (and optionally the per-class log-probabilities) and a labeled file;
  writes ``labels.csv``, ``rounds.json`` (T per round with intervals) and ``report.md``/``report.html``.
* ``evaluate``: scores a finished run against held-out gold labels (never read by the run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from silr.cli.errors import Failure

kclass_app = typer.Typer(help="K-class labeling (more than two classes): annotate with K label words, refine, evaluate.",
                         no_args_is_help=True)

LOGP_PREFIX = "llm_logp_"


@kclass_app.command("annotate")
def annotate(
    corpus: Path = typer.Argument(..., help="File of texts (CSV, JSONL or Parquet)."),
    out: Path = typer.Option(..., "--out", help="Output file: the input's columns plus llm_label and llm_logp_<word> per class."),
    label_words: Optional[str] = typer.Option(None, "--label-words", help="K comma-separated label words in class order, e.g. sports,politics,tech."),
    instruction: Optional[str] = typer.Option(None, "--instruction", help="Instruction text (with --label-words)."),
    prompt: Optional[Path] = typer.Option(None, "--prompt", help="Prompt file (TOML/JSON: instruction, label_words = [...], template)."),
    text_col: str = typer.Option("text", "--text-col"),
    model: str = typer.Option("gemma-3-270m", "--model", help="gemma-3-270m (local, default) or a local transformers model folder."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    max_text_tokens: int = typer.Option(256, "--max-text-tokens", min=1),
    center: bool = typer.Option(False, "--center", help="Label by the argmax after subtracting each class's mean log-probability over the corpus (label-free calibration of a model that leans to one word); the llm_logp_* columns stay raw."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Label every text with one of K label words (argmax of the K normalised log-probabilities)."""
    from silr.annotate.local import LocalLMScorer
    from silr.io import clean_texts, read_table, write_table
    from silr.multiclass.annotate import center_scores, kclass_scores, kprompt_from_words, load_kprompt

    if (label_words is None) == (prompt is None):
        raise Failure("give either --label-words a,b,c (with --instruction) or --prompt FILE")
    spec = load_kprompt(prompt) if prompt is not None else kprompt_from_words(label_words, instruction)
    df = read_table(corpus, required=[text_col], what="corpus")
    texts = clean_texts(df[text_col], what=f"corpus file '{corpus}'", column=text_col)
    scorer = LocalLMScorer(model, cache_dir=cache_dir, batch_size=batch_size, max_text_tokens=max_text_tokens)

    def progress(done, total):
        if not quiet:
            typer.echo(f"scored {done}/{total}", err=True)

    lp, cut = kclass_scores(scorer, texts, spec, on_batch=progress)
    words = list(spec.label_words)
    df["llm_label"] = [words[i] for i in (center_scores(lp) if center else lp).argmax(1)]
    for j, w in enumerate(words):
        df[f"{LOGP_PREFIX}{w}"] = lp[:, j]
    write_table(df, out)
    if cut.any() and not quiet:
        typer.echo(f"note: {int(cut.sum())} texts were truncated to fit the prompt limits", err=True)
    typer.echo(str(out))


def _load(corpus, labeled, pseudo_col, text_col, label_col, score_prefix):
    from silr.io import clean_texts, read_table

    df = read_table(corpus, required=[text_col, pseudo_col], what="corpus")
    ldf = read_table(labeled, required=[text_col, label_col], what="labeled")
    texts = clean_texts(df[text_col], what=f"corpus file '{corpus}'", column=text_col)
    ltexts = clean_texts(ldf[text_col], what=f"labeled file '{labeled}'", column=text_col)
    y = df[pseudo_col].astype(str).str.strip().to_numpy(dtype=object)
    if (y == "").any() or df[pseudo_col].isna().any():
        bad = int(np.flatnonzero((y == "") | df[pseudo_col].isna().to_numpy())[0])
        raise Failure(f"corpus file '{corpus}': column '{pseudo_col}' is empty on row {bad + 2} (every row needs an LLM label)")
    gold_lab = ldf[label_col].astype(str).str.strip().to_numpy(dtype=object)
    if ldf[label_col].isna().any():
        raise Failure(f"labeled file '{labeled}': column '{label_col}' is empty on row {int(np.flatnonzero(ldf[label_col].isna())[0]) + 2}")
    classes = sorted(set(y) | set(gold_lab))
    llm = None
    if score_prefix:
        cols = [f"{score_prefix}{c}" for c in classes]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise Failure(f"corpus file '{corpus}' has no column '{missing[0]}' (--score-prefix {score_prefix}: one column per class)")
        llm = df[cols].to_numpy(dtype=np.float64)
        if not np.isfinite(llm).all():
            raise Failure(f"corpus file '{corpus}': the {score_prefix}* columns must be finite numbers")
    # the labeled rows: the corpus row with the same text (its LLM label), else appended with their own
    where = {}
    for i, t in enumerate(texts):
        where.setdefault(t, i)
    idx = [where.get(t, -1) for t in ltexts]
    if min(idx, default=0) < 0:
        j = idx.index(-1)
        raise Failure(f"labeled file '{labeled}': row {j + 2} has a text that is not in the corpus; K-class refinement "
                      "needs each labeled row's LLM label (add it to the corpus)")
    gold = np.full(len(texts), None, dtype=object)
    for j, i in enumerate(idx):
        if gold[i] is not None and gold[i] != gold_lab[j]:
            raise Failure(f"labeled file '{labeled}': row {j + 2} gives text already labeled {gold[i]!r} another label {gold_lab[j]!r}")
        gold[i] = gold_lab[j]
    return df, texts, y, gold, llm, classes


@kclass_app.command("refine")
def refine(
    corpus: Path = typer.Argument(..., help="Corpus file with a text column and the LLM's label column."),
    pseudo_col: str = typer.Option("llm_label", "--pseudo-col", help="Column with the LLM's label (any K values)."),
    labeled: Path = typer.Option(..., "--labeled", help="Labeled sample (text + gold label); its texts must be corpus rows."),
    out: Path = typer.Option(..., "--out", help="Output folder: labels.csv, rounds.json, report.md, report.html."),
    text_col: str = typer.Option("text", "--text-col"),
    label_col: str = typer.Option("label", "--label-col"),
    score_prefix: Optional[str] = typer.Option(None, "--score-prefix", help="Columns PREFIX<class> with the LLM's per-class log-probabilities (e.g. llm_logp_ from `silr kclass annotate`)."),
    rounds: int = typer.Option(5, "--rounds", min=1),
    seed: int = typer.Option(0, "--seed"),
    backbone: str = typer.Option("minilm", "--backbone", help="minilm (default), e5, ngram, st:MODEL_DIR."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir"),
    overwrite: bool = typer.Option(False, "--overwrite"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Refine K-class LLM labels with the T-corrected robust risk, round after round."""
    from silr.backbones import get_backbone
    from silr.io import atomic_write_text, write_table
    from silr.multiclass.report import report_html, report_markdown, run_summary
    from silr.refine import SelfIterativeRefiner
    from silr.run_folder import prepare_out_dir

    prepare_out_dir(out, overwrite=overwrite)
    df, texts, y, gold, llm, classes = _load(corpus, labeled, pseudo_col, text_col, label_col, score_prefix)
    if len(classes) < 3:
        raise Failure(f"{len(classes)} classes ({', '.join(classes)}): use `silr refine` for two classes")
    kw = {"progress": not quiet}
    if cache_dir is not None:
        kw["cache_dir"] = cache_dir
    X = get_backbone(backbone, **kw).transform(texts)

    def on_round(rec):
        if not quiet and "T" in rec:
            typer.echo(f"round {rec['round']}: est.acc {rec['accuracy']:.3f} [{rec['accuracy_interval'][0]:.3f}, "
                       f"{rec['accuracy_interval'][1]:.3f}] cond(T) {rec['condition']:.1f}"
                       + (f" changed={rec['n_changed']}" if rec.get("n_changed") is not None else ""), err=True)

    model = SelfIterativeRefiner(rounds=rounds, seed=seed).fit(X, y, y_gold=gold, llm_score=llm, on_round=on_round)
    lab = np.flatnonzero(np.array([g is not None for g in gold]))
    y_lab = np.searchsorted(model.classes_, gold[lab].astype(str))
    summary = run_summary(model, lab, y_lab)
    out.mkdir(parents=True, exist_ok=True)
    res = df[[text_col]].copy()
    res["llm_label"] = y
    res["label"] = model.transduction_
    for r in range(1, model.n_rounds_ + 1):
        res[f"round_{r}"] = model.classes_[model.labels_[r]]
    write_table(res, out / "labels.csv")
    from silr.io import json_default

    atomic_write_text(out / "rounds.json", json.dumps(summary, indent=1, default=json_default))
    atomic_write_text(out / "report.md", report_markdown(summary))
    atomic_write_text(out / "report.html", report_html(summary))
    if not quiet:
        typer.echo(f"final labels: {summary['final_source']} ({summary['selection']})", err=True)
    typer.echo(str(out))


@kclass_app.command("evaluate")
def evaluate(
    run_dir: Path = typer.Argument(..., help="A finished `silr kclass refine` folder."),
    gold: Path = typer.Option(..., "--gold", help="Held-out gold labels of the corpus rows, in corpus order (column --label-col)."),
    label_col: str = typer.Option("label", "--label-col"),
) -> None:
    """Evaluation step: score the run's labels per round against held-out gold (never used by the run)."""
    from silr.io import atomic_write_text, read_table
    from silr.multiclass.report import evaluation

    try:
        summary = json.loads((run_dir / "rounds.json").read_text())
    except (OSError, ValueError) as e:
        raise Failure(f"'{run_dir}' is not a finished `silr kclass refine` folder (rounds.json: {e})") from e
    res = read_table(run_dir / "labels.csv", required=["label", "llm_label"], what="run labels")
    g = read_table(gold, required=[label_col], what="gold")
    if len(g) != len(res):
        raise Failure(f"gold file '{gold}' has {len(g)} rows; the run has {len(res)} corpus rows (same order expected)")
    classes = summary["classes"]
    code = {c: i for i, c in enumerate(classes)}
    gc = np.array([code.get(str(v).strip(), -1) if v == v else -1 for v in g[label_col]])
    per = [res["llm_label"]] + [res[c] for c in res.columns if c.startswith("round_")]
    ev = evaluation(classes, [[code.get(str(v), -1) for v in L] for L in per],
                    [code.get(str(v), -1) for v in res["label"]], gc)
    for pr in ev["per_round"]:
        typer.echo(f"round {pr['round']}: accuracy {pr['accuracy']:.4f}")
    typer.echo(f"final labels: accuracy {ev['final_accuracy']:.4f} on {ev['n']} rows")
    atomic_write_text(run_dir / "evaluation.json", json.dumps(ev, indent=1))
