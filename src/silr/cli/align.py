"""``silr reward`` and ``silr align``: a refined classifier as a reward model, and aligning a policy with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from silr.cli.errors import reported
from silr.reward import PKU_PAIR_TEMPLATE


def _unescape(s: str) -> str:
    return s.replace("\\n", "\n").replace("\\t", "\t")


def reward(
    run_dir: Path = typer.Argument(..., help="A run folder written by `silr refine` (its classifier is the reward)."),
    input: Path = typer.Argument(..., help="File (CSV, JSONL, Parquet) of (prompt, response) pairs or of texts."),
    out: Path = typer.Option(..., "--out", help="Output file: INPUT's columns plus `reward`."),
    prompt_col: str = typer.Option("prompt", "--prompt-col", help="Prompt column (pair mode)."),
    response_col: str = typer.Option("response", "--response-col", help="Response column (pair mode)."),
    text_col: Optional[str] = typer.Option(None, "--text-col", help="Score this column of ready-made texts instead of pairs."),
    template: str = typer.Option(PKU_PAIR_TEMPLATE.replace("\n", "\\n"), "--template",
                                 help="Pair -> text format with {prompt} and {response} (\\n allowed); must match the classifier's training texts."),
    positive_is_bad: bool = typer.Option(False, "--positive-is-bad", help="The classifier's positive class (label 1) is the bad one (e.g. 1 = unsafe): reward the negative class."),
    proba: bool = typer.Option(False, "--proba", help="Reward = calibrated probability of the rewarded class instead of the decision score."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Texts per scoring batch."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Score (prompt, response) pairs or texts with a refined classifier used as a reward model
    (higher = the classifier's positive class, or its negative class with --positive-is-bad)."""
    from silr.io import clean_texts, read_table, write_table
    from silr.reward import RewardModel

    with reported():
        rm = RewardModel.from_run(run_dir, template=_unescape(template), invert=positive_is_bad,
                                  output="proba" if proba else "score", batch_size=batch_size, progress=not quiet)
        if text_col:
            df = read_table(input, required=[text_col], what="input")
            texts = clean_texts(df[text_col], what=f"input file '{input}'", column=text_col)
            r = rm.score(texts)
        else:
            df = read_table(input, required=[prompt_col, response_col], what="input")
            r = rm.score_pairs(df[prompt_col].fillna("").astype(str).tolist(),
                               df[response_col].fillna("").astype(str).tolist())
        df["reward"] = r
        write_table(df, out)
    if not quiet:
        typer.echo(f"{len(df)} rows scored: mean reward {float(r.mean()):.4f}", err=True)
    typer.echo(str(out))


def align(
    policy: str = typer.Argument(..., help="Policy LM: gemma-3-270m (local, offline) or a transformers model folder."),
    prompts: Path = typer.Argument(..., help="File of prompts (CSV, JSONL, Parquet)."),
    out: Path = typer.Option(..., "--out", help="Output folder: samples, best-of-n picks, pairs, DPO checkpoints/adapter, summary.json."),
    reward_run: Optional[Path] = typer.Option(None, "--reward", help="Reward run folder (`silr refine` output); needed for best-of-n and dpo."),
    method: str = typer.Option("best-of-n", "--method", help="best-of-n, dpo (preference pairs + DPO with LoRA), or self-refine (the LLM judges its own answers, silr refines the judgements; needs --answer-col)."),
    n: int = typer.Option(4, "--n", min=1, help="Answers sampled per prompt."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1),
    steps: int = typer.Option(30, "--steps", min=1, help="DPO optimisation steps."),
    save_steps: int = typer.Option(10, "--save-steps", min=1, help="Checkpoint every K DPO steps (resumed automatically)."),
    prompt_col: str = typer.Option("prompt", "--prompt-col"),
    answer_col: Optional[str] = typer.Option(None, "--answer-col", help="Gold answers (self-refine: the checked labeled sample, and the evaluation)."),
    n_labeled: int = typer.Option(50, "--n-labeled", min=4, help="self-refine: gold-checked answers."),
    template: str = typer.Option(PKU_PAIR_TEMPLATE.replace("\n", "\\n"), "--template", help="Reward's pair -> text format."),
    positive_is_bad: bool = typer.Option(False, "--positive-is-bad", help="The reward classifier's positive class is the bad one."),
    seed: int = typer.Option(0, "--seed"),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Prompts per generation batch."),
    learning_rate: float = typer.Option(5e-5, "--lr"),
    beta: float = typer.Option(0.1, "--beta", help="DPO beta."),
    lora_r: int = typer.Option(8, "--lora-r"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Align a policy LM with a silr reward: best-of-n sampling, or DPO with LoRA on reward-ranked pairs;
    or self-refine its answers. Reports the reward of the policy's answers before and after."""
    from silr.align import run_align
    from silr.io import clean_texts, read_table
    from silr.reward import RewardModel

    if method not in ("best-of-n", "dpo", "self-refine"):
        raise typer.BadParameter("--method must be best-of-n, dpo or self-refine")
    if method != "self-refine" and reward_run is None:
        raise typer.BadParameter(f"--method {method} needs --reward RUN_DIR")
    if method == "self-refine" and not answer_col:
        raise typer.BadParameter("--method self-refine needs --answer-col (gold answers)")
    with reported():
        df = read_table(prompts, required=[prompt_col] + ([answer_col] if answer_col else []), what="prompts")
        ps = clean_texts(df[prompt_col], what=f"prompts file '{prompts}'", column=prompt_col)
        rm = None
        if reward_run is not None and method != "self-refine":
            rm = RewardModel.from_run(reward_run, template=_unescape(template), invert=positive_is_bad)
        s = run_align(policy, ps, out, reward=rm, method=method, n=n, max_new_tokens=max_new_tokens, steps=steps,
                      save_steps=save_steps, seed=seed, batch_size=batch_size, learning_rate=learning_rate,
                      beta=beta, lora_r=lora_r, gold=df[answer_col].tolist() if answer_col else None,
                      n_labeled=n_labeled, progress=not quiet)
    if method == "self-refine":
        for k, v in s["accuracy"].items():
            typer.echo(f"{k}: {v:.3f}", err=True)
    else:
        typer.echo(f"reward of the policy's first sample: {s['before']['reward_first_sample']:.4f}; "
                   f"best-of-{n}: {s['best_of_n']['reward']:.4f}", err=True)
        if "dpo" in s:
            typer.echo(f"after DPO ({s['dpo']['steps']} steps, {s['dpo']['pairs']} pairs): "
                       f"{s['dpo']['reward_after']:.4f}", err=True)
    typer.echo(json.dumps({k: v for k, v in s.items() if k in ("before", "best_of_n", "dpo", "accuracy")}))
    typer.echo(str(out))
