"""The whole job from one config file: annotate (or read pseudo-labels), refine, evaluate, report.

A config is TOML or YAML::

    [data]
    corpus = "reviews.csv"        # CSV, JSONL or Parquet
    text_col = "text"
    pseudo_col = ""               # set to use pseudo-labels already in the corpus instead of annotating
    score_col = ""                # K classes with pseudo_col: the prefix of the per-class LLM score columns
                                  # (PREFIX<class>), as `silr refine --score-col`
    gold_col = ""                 # optional corpus column of gold labels: used ONLY by the evaluation step
    test = ""                     # optional held-out test file (text, label) for the evaluation step; with an
                                  # [annotator] its texts are scored too (cached), so a stack hand-back is tested whole

    [labeled]
    file = "labeled.csv"          # the ~50 human-labeled rows (text, label) ...
    label_col = "label"
    sample_from_gold = 0          # ... or sample this many rows of the corpus and reveal their gold_col labels

    [annotator]
    model = "gemma-3-270m"        # or "qwen2.5-coder-1.5b" (silr[qwen]), a local model folder, or "openai:MODEL"
    prompt = "sentiment"          # a built-in prompt name or a prompt file
    instruction = ""              # or an instruction and label words instead of a prompt
    label_words = ""              # "POS,NEG"
    shots = 4
    threshold = "accuracy"        # "accuracy", "prior" or a number
    base_url = ""                 # server URL (or SILR_OPENAI_BASE_URL / OPENAI_BASE_URL); the API key comes
                                  # from SILR_OPENAI_API_KEY / OPENAI_API_KEY only, never from a config file
    api = "chat"                  # server API: "chat" or "completions"
    timeout = 60.0                # seconds per server request before it is retried
    batch_size = 16
    concurrency = 8

    [refine]
    backbone = "minilm"
    rounds = 5
    seed = 0

    [engine]                      # optional: where the work runs (default: this process)
    kind = "local"                # or "ray" (pip install 'silr[ray]')
    address = ""                  # ray: "" starts a local cluster, "auto" joins this machine's, "ray://host:port"
    workers = 0                   # ray: actors per pool (0: one per CPU of the cluster)
    rows_per_shard = 50000        # ray: rows per shard

Everything goes into one output folder: the annotated corpus, the run (labels, rounds, model, report) and,
when gold is given, the evaluation.
"""

from __future__ import annotations

import json
import os
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from silr.io import InputError, parse_binary_labels, read_table, write_table

__all__ = ["JobConfig", "config_from_dict", "load_config", "run_job", "demo_config", "prepare_demo"]


@dataclass
class DataSection:
    corpus: str = ""
    text_col: str = "text"
    pseudo_col: str = ""
    score_col: str = ""
    gold_col: str = ""
    test: str = ""


@dataclass
class LabeledSection:
    file: str = ""
    label_col: str = "label"
    sample_from_gold: int = 0


@dataclass
class AnnotatorSection:
    model: str = "gemma-3-270m"
    prompt: str = "generic"
    instruction: str = ""
    label_words: str = ""
    shots: int = 4
    threshold: Any = "accuracy"
    base_url: str = ""
    api: str = "chat"
    timeout: float = 60.0
    batch_size: int = 16
    concurrency: int = 8
    limit: int = 0


@dataclass
class RefineSection:
    backbone: str = "minilm"
    rounds: int = 5
    seed: int = 0
    risk: str = "robust_uu"
    later_risk: str = "uu"
    finetune: bool = False  # fine-tune MiniLM end to end each round (silr.finetune); supervised weight 0 unless set
    llm_layer: int = -1  # backbone "llm": read this layer's state (hidden_states[k]) instead of the final one (-1)


@dataclass
class EngineSection:
    kind: str = "local"
    address: str = ""
    workers: int = 0
    rows_per_shard: int = 50000


@dataclass
class JobConfig:
    data: DataSection = field(default_factory=DataSection)
    labeled: LabeledSection = field(default_factory=LabeledSection)
    annotator: AnnotatorSection = field(default_factory=AnnotatorSection)
    refine: RefineSection = field(default_factory=RefineSection)
    engine: EngineSection = field(default_factory=EngineSection)
    base_dir: str = "."

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("base_dir")
        return d


_SECTIONS = {"data": DataSection, "labeled": LabeledSection, "annotator": AnnotatorSection, "refine": RefineSection,
             "engine": EngineSection}


def _check_type(where: str, key: str, value: Any, default: Any) -> Any:
    if key == "threshold":
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return value
        raise InputError(f"{where}: key 'threshold' must be 'accuracy', 'prior' or a number, got {value!r}")
    want = type(default)
    if want is int and isinstance(value, bool):
        raise InputError(f"{where}: key '{key}' must be an integer, got {value!r}")
    if want is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, want):
        raise InputError(f"{where}: key '{key}' must be {want.__name__}, got {type(value).__name__} {value!r}")
    return value


def config_from_dict(raw: dict, *, source: str = "config", base_dir: str | os.PathLike = ".") -> JobConfig:
    """Validate a parsed config: an unknown section or key, or a wrong type, names it."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    cfg = JobConfig(base_dir=str(base_dir))
    for section, body in raw.items():
        if section not in _SECTIONS:
            raise InputError(f"{source}: unknown section [{section}]; known sections: {', '.join(_SECTIONS)}")
        if not isinstance(body, dict):
            raise InputError(f"{source}: [{section}] must be a table of keys")
        obj = getattr(cfg, section)
        known = {f.name: f for f in fields(obj)}
        for key, value in body.items():
            if key not in known:
                raise InputError(
                    f"{source}: unknown key '{key}' in [{section}]; known keys: {', '.join(known)}"
                )
            setattr(obj, key, _check_type(f"{source} [{section}]", key, value, getattr(obj, key)))
    _job_engine(cfg, source=source)
    return cfg


def _job_engine(cfg: JobConfig, *, source: str = "config"):
    """The config's [engine] as a :class:`silr.engine.Engine` (a bad choice names the key)."""
    from silr.engine import EngineError, resolve_engine

    e = cfg.engine
    try:
        return resolve_engine(e.kind, e.address or None, workers=e.workers or None, rows_per_shard=e.rows_per_shard)
    except EngineError as err:
        raise InputError(f"{source} [engine]: {err}") from None


def load_config(path: str | os.PathLike) -> JobConfig:
    p = Path(path)
    if not p.exists():
        raise InputError(f"config file '{p}' does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".toml":
            raw = tomllib.loads(text)
        elif p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raise InputError(f"config file '{p}' must be .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, Exception) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"config file '{p}' does not parse: {' '.join(str(e).split())}") from None
    return config_from_dict(raw, source=f"config '{p}'", base_dir=p.parent)


def _drop_draws_without_gold(labeled: pd.DataFrame, gold_col: str, corpus_path, echo) -> tuple[pd.DataFrame, int]:
    """``[labeled] sample_from_gold``: a drawn row whose gold_col cell is empty has no gold to reveal; it leaves the
    sample with a note (both the binary and the K-class job). Returns the sample and how many rows left it."""
    from silr.multiclass.files import class_names

    has_gold = class_names(labeled["label"]) != ""
    n_out = int((~has_gold).sum())
    if n_out == len(labeled):
        raise InputError(f"config: [labeled] sample_from_gold drew {len(labeled)} corpus rows, none with a gold "
                         f"label in [data] gold_col '{gold_col}' of corpus file '{corpus_path}'")
    if n_out:
        echo(f"note: {n_out} of the {len(labeled)} rows drawn from gold for the labeled sample have no gold label "
             f"(column '{gold_col}' empty): left out of the labeled sample")
        labeled = labeled[has_gold].reset_index(drop=True)
    return labeled, n_out


def _resolve(cfg: JobConfig, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(cfg.base_dir) / p


def run_job(
    cfg: JobConfig,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    on_round: Callable[[dict], None] | None = None,
    engine=None,
) -> dict:
    """Annotate (unless pseudo-labels are given), refine, evaluate when gold is given, write one folder.

    ``engine`` (a :class:`silr.engine.Engine`) overrides the config's ``[engine]``.

    Returns the run's summary (``rounds.json``), with ``evaluation`` when gold was given. Gold labels are
    read only for the labeled sample (``sample_from_gold`` rows) and, after the run, by the evaluation.
    """
    from silr.inputs import drop_unlabeled_draws, inputs_from_annotation
    from silr.run_folder import evaluate_run, prepare_out_dir, write_run
    from silr.finetune import refine_learner_params
    from silr.texts import refine_texts

    out = prepare_out_dir(out_dir, overwrite=overwrite)
    d, lab_cfg, a, r = cfg.data, cfg.labeled, cfg.annotator, cfg.refine
    eng = engine if engine is not None else _job_engine(cfg)
    if eng.is_ray and a.limit:
        raise InputError("config: [annotator] limit runs on the local engine (cut the corpus file instead)")
    if not d.corpus:
        raise InputError("config: [data] corpus is required")
    corpus_path = _resolve(cfg, d.corpus)
    required = [d.text_col] + ([d.pseudo_col] if d.pseudo_col else [])
    corpus = read_table(corpus_path, required=required, what="corpus").reset_index(drop=True)
    if d.gold_col and d.gold_col not in corpus.columns:
        raise InputError(f"corpus file '{corpus_path}' has no gold column '{d.gold_col}' ([data] gold_col)")
    if a.limit:
        corpus = corpus.iloc[: a.limit].reset_index(drop=True)

    # the labeled sample: a file, or rows of the corpus whose gold is revealed (the labeling budget)
    n_no_gold = 0
    if lab_cfg.file:
        labeled = read_table(_resolve(cfg, lab_cfg.file), required=[d.text_col, lab_cfg.label_col], what="labeled sample")
        labeled = labeled[[d.text_col, lab_cfg.label_col]].rename(columns={d.text_col: "text", lab_cfg.label_col: "label"})
    elif lab_cfg.sample_from_gold:
        if not d.gold_col:
            raise InputError("config: [labeled] sample_from_gold needs [data] gold_col")
        rng = np.random.default_rng(r.seed)
        idx = np.sort(rng.choice(len(corpus), size=min(lab_cfg.sample_from_gold, len(corpus)), replace=False))
        labeled = pd.DataFrame({"text": corpus[d.text_col].iloc[idx].to_numpy(), "label": corpus[d.gold_col].iloc[idx].to_numpy()})
        labeled, n_no_gold = _drop_draws_without_gold(labeled, d.gold_col, corpus_path, echo)
    else:
        raise InputError("config: [labeled] needs 'file' or 'sample_from_gold'")
    from silr.multiclass.job import kclass_job_spec, run_kclass_job

    is_k, kspec = kclass_job_spec(cfg, corpus, labeled)
    if is_k:  # K > 2 classes (3+ label words, or 3+ values in the pseudo-labels / labeled sample): silr.multiclass
        if eng.is_ray:
            raise InputError("config: the K-class path runs on the local engine ([engine] kind = \"local\")")
        return run_kclass_job(cfg, out, corpus, labeled, kspec, corpus_path=corpus_path, progress=progress, echo=echo,
                              on_round=on_round, labeled_what=str(lab_cfg.file or f"{lab_cfg.sample_from_gold} corpus rows"),
                              labeled_without_gold=n_no_gold)
    if d.score_col:
        raise InputError("config: [data] score_col is the per-class score prefix of a K-class job (3+ classes in "
                         "pseudo_col); for two classes give the score column to `silr refine --score-col`")
    labeled["label"] = parse_binary_labels(labeled["label"], what="labeled sample", column="label")

    staging = out.parent / f".{out.name}.staging"
    import shutil

    shutil.rmtree(staging, ignore_errors=True)  # left over by an interrupted run: it is rebuilt
    staging.mkdir(parents=True)
    t0 = time.perf_counter()
    annotation = None
    backbone = r.backbone
    if d.pseudo_col:
        if r.backbone == "llm":
            raise InputError("config: [refine] backbone = \"llm\" reads the annotating LLM's hidden states, so it "
                             "needs the annotation step (leave [data] pseudo_col empty)")
        pseudo_col = d.pseudo_col
        annotated = corpus
    else:
        from silr.annotate.prompts import load_prompt, spec_from_instruction
        from silr.annotate.run import annotate_frame

        if a.instruction:
            if not a.label_words or "," not in a.label_words:
                raise InputError("config: [annotator] instruction needs label_words = \"POS,NEG\"")
            spec = spec_from_instruction(a.instruction, a.label_words)
        else:
            spec = load_prompt(a.prompt)
        from silr.annotate.factory import make_annotator
        from silr.cache_keys import default_cache_dir
        from silr.io import clean_texts

        cache_root = default_cache_dir()
        annotator = None if eng.is_ray and r.backbone != "llm" else make_annotator(
            a.model, cache_dir=cache_root, base_url=a.base_url, api=a.api, concurrency=a.concurrency,
            timeout=a.timeout, batch_size=a.batch_size)
        lab_for_annotation = labeled.rename(columns={"text": d.text_col}) if d.text_col != "text" else labeled
        if r.backbone == "llm":
            from silr.backbones.prompted import llm_backbone

            if not hasattr(annotator, "embed"):
                raise InputError("config: [refine] backbone = \"llm\" needs a local annotator model (its hidden "
                                 "states are the features); a server gives only scores")
            try:
                backbone = llm_backbone(spec, lab_for_annotation, d.text_col, shots=a.shots, model=a.model,
                                        scorer=annotator, progress=progress,
                                        layer=None if r.llm_layer < 0 else r.llm_layer)
            except ValueError as e:
                raise InputError(f"config: [refine] llm_layer = {r.llm_layer}: {e}") from None
            all_texts = clean_texts(corpus[d.text_col], what=f"corpus file '{corpus_path}'", column=d.text_col)
            echo(f"annotating {len(corpus)} texts with {a.model} ({a.shots}-shot), keeping its hidden states ...")
            backbone.prefill(all_texts + clean_texts(labeled["text"], what="labeled sample", column="text"),
                             cache_root / "annotations.sqlite")
        else:  # with the llm backbone the pass above scored the corpus too; what follows reads its cache
            echo(f"annotating {len(corpus)} texts with {a.model} ({a.shots}-shot) ...")
        if eng.is_ray and r.backbone != "llm":
            from silr.engine.ray_annotate import annotate_on_ray

            import hashlib

            # the shards live in the cache, not in the staging folder (rebuilt by every run), so a killed job resumes
            job_key = hashlib.sha256(json.dumps([str(corpus_path.resolve()), d.text_col, a.model, a.prompt,
                                                 a.instruction, a.label_words, a.shots, a.base_url, a.api,
                                                 labeled["text"].astype(str).tolist()]).encode()).hexdigest()[:16]
            ann_file = cache_root / "engine" / f"annotate-{job_key}" / "annotated.parquet"
            annotation = annotate_on_ray(
                eng, corpus_path, ann_file, text_col=d.text_col, model=a.model, spec=spec, labeled=lab_for_annotation,
                shots=a.shots, threshold=a.threshold, seed=0, label_col="label",
                annotator_kwargs={"cache_dir": cache_root, "api": a.api, "concurrency": a.concurrency,
                                  "timeout": a.timeout, "batch_size": a.batch_size},
                base_url=a.base_url, cache=cache_root / "annotations.sqlite", progress=progress,
                drop_columns=[c for c in (d.gold_col,) if c])
            annotated = read_table(ann_file, what="annotated corpus")
            ann_file.unlink()
        else:
            annotated, annotation = annotate_frame(
                corpus.drop(columns=[c for c in (d.gold_col,) if c]),
                d.text_col, annotator, spec, labeled=lab_for_annotation,
                shots=a.shots, threshold=a.threshold, progress=progress, cache=cache_root / "annotations.sqlite",
            )
        pseudo_col = "pseudo_label"
        n_abst = int(annotated["abstained"].sum())
        if n_abst:
            echo(f"note: {n_abst} texts abstained; they take the label of the calibrated threshold on their score or are dropped")
        write_table(annotated, staging / "annotated.csv")
        (staging / "annotation.json").write_text(json.dumps(annotation, indent=2, default=str))
    if not lab_cfg.file:  # sample_from_gold drew its rows before the LLM labeled them
        has = ~np.isnan(parse_binary_labels(annotated[pseudo_col], what="annotated corpus", column=pseudo_col,
                                            allow_missing=True).astype(float))
        labeled, n_out = drop_unlabeled_draws(annotated, labeled, text_col=d.text_col, has_label=has)
        if n_out:
            echo(f"note: {n_out} rows drawn from gold for the labeled sample have no pseudo-label (abstained): "
                 "left out of the labeled sample")
    inputs, keep = inputs_from_annotation(
        annotated, labeled, text_col=d.text_col, pseudo_col=pseudo_col,
        use_llm_score="llm_score" in annotated.columns and pseudo_col == "pseudo_label" and not d.pseudo_col,
        corpus_path=str(corpus_path),
        labeled_path=str(lab_cfg.file or f"{lab_cfg.sample_from_gold} corpus rows, gold revealed"),
    )
    if lab_cfg.file:  # a file drawn by `silr sample`: its design weights the estimates, as in `silr refine`
        from silr.sampling.files import design_inputs_from_annotation

        use_score = "llm_score" in annotated.columns and pseudo_col == "pseudo_label" and not d.pseudo_col
        drawn = design_inputs_from_annotation(
            annotated, _resolve(cfg, lab_cfg.file), keep, text_col=d.text_col, label_col=lab_cfg.label_col,
            pseudo_col=pseudo_col, score_col="llm_score" if use_score else None, corpus=str(corpus_path))
        if drawn is not None:
            inputs = drawn
            echo(f"note: {drawn.notes[-1]}")
    if inputs.llm_score is not None and annotation is not None:
        from silr.annotate.calibrate import fitted_on_labeled

        # the refiner judges the LLM's labels on the labeled rows out of fold only if they set its threshold
        inputs.llm_threshold_fitted = fitted_on_labeled(annotation.get("threshold"))
    if not keep.all():
        echo(f"note: {int((~keep).sum())} abstained rows are left out of the refinement")
    run_refine = refine_texts
    if eng.is_ray and (r.finetune or not (isinstance(backbone, str) and backbone in ("ngram", "llm"))):
        from functools import partial

        from silr.engine.ray_refine import refine_texts_ray

        run_refine = partial(refine_texts_ray, engine=eng)
    elif eng.is_ray:
        echo("note: the ray engine refines dense encoder features with the head (or fine-tunes under Ray Train); "
             "this backbone runs locally")
    result = run_refine(
        inputs, backbone=backbone, rounds=r.rounds, seed=r.seed, progress=progress,
        on_round=on_round, risk=r.risk, later_risk=r.later_risk,
        **refine_learner_params(r.finetune, None, progress=progress),
    )
    result.summary["config"] = cfg.to_dict()
    if annotation is not None:
        result.summary["annotation"] = annotation
    write_run(result, out, report=True)
    for f in staging.iterdir():
        os.replace(f, out / f.name)
    staging.rmdir()

    summary = result.summary
    # --- evaluation: a separate step that reads gold only now, after the run is written ---
    if d.gold_col or d.test:
        gold_file = None
        if d.gold_col:
            gold_file = out / "gold.csv"
            write_table(pd.DataFrame({"label": corpus[d.gold_col].to_numpy()[keep]}), gold_file)
        if gold_file is not None:
            test_file = _resolve(cfg, d.test) if d.test else None
            test_score_col = None
            if (test_file is not None and annotation is not None and inputs.llm_score is not None
                    and annotator is not None):
                # a stack hand-back reads the LLM's score: the test texts get it from the same annotator and prompt
                # (cached), so the test figure is the handed-back model's, not the refined classifier's alone
                test_file, test_score_col = _score_test_file(test_file, out, annotator, spec, labeled, a,
                                                             cache_root, progress)
            summary["evaluation"] = evaluate_run(out, gold_file, test=test_file, test_score_col=test_score_col)
    summary["total_seconds"] = time.perf_counter() - t0
    return summary


def _score_test_file(test_file, out: Path, annotator, spec, labeled, a, cache_root, progress):
    """The held-out test file (``text``, ``label``) with the LLM's score of each text in ``llm_score`` (same prompt:
    ``labeled`` is the labeled sample, ``text`` and ``label``), written to ``OUT/test_scored.csv``; the file as given
    (and no score column) when the LLM abstained on any test text."""
    from silr.annotate.run import annotate_frame

    tdf = read_table(test_file, required=["text", "label"], what="test file")
    scored, _ = annotate_frame(tdf[["text"]], "text", annotator, spec, labeled=labeled, shots=a.shots,
                               threshold=a.threshold, progress=progress, cache=cache_root / "annotations.sqlite")
    if scored["abstained"].any():
        return test_file, None
    path = out / "test_scored.csv"
    write_table(tdf.assign(llm_score=scored["llm_score"].to_numpy()), path)
    return path, "llm_score"


def demo_config(n_corpus: int = 2000, seed: int = 0) -> tuple[JobConfig, pd.DataFrame]:
    """The embedded default: Rotten Tomatoes snippets shipped with silr (:mod:`silr.corpora`), Gemma-3-270M
    labels, the features from the same Gemma pass (its hidden state under the prompt)."""
    from silr.corpora import load_embedded

    df = load_embedded("rotten_tomatoes", split="train")
    df = df.sample(n=min(n_corpus, len(df)), random_state=seed).reset_index(drop=True)
    cfg = JobConfig()
    cfg.data = DataSection(corpus="corpus.csv", text_col="text", gold_col="gold")
    cfg.labeled = LabeledSection(sample_from_gold=50)
    cfg.annotator = AnnotatorSection(model="gemma-3-270m", prompt="sentiment", shots=4, threshold="accuracy")
    cfg.refine = RefineSection(backbone="llm", rounds=5, seed=seed)
    return cfg, df.rename(columns={"label": "gold"})


def prepare_demo(n_corpus: int = 2000, seed: int = 0, *, rounds: int = 5, backbone: str = "llm") -> tuple[JobConfig, int]:
    """The demo's config, its corpus written under the cache folder (``demo/corpus-N-SEED.csv``); returns
    ``(config, corpus rows)``."""
    from silr.cache_keys import default_cache_dir

    cfg, df = demo_config(n_corpus=n_corpus, seed=seed)
    cfg.refine.rounds = rounds
    cfg.refine.backbone = backbone
    base = default_cache_dir() / "demo"
    base.mkdir(parents=True, exist_ok=True)
    write_table(df, base / f"corpus-{n_corpus}-{seed}.csv")
    cfg.data.corpus = f"corpus-{n_corpus}-{seed}.csv"
    cfg.base_dir = str(base)
    return cfg, len(df)
