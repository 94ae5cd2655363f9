"""Features from the labeling LLM itself: its final hidden state at the end of the few-shot prompt.

The LLM reads the label word off this state (``log p(" positive") - log p(" negative")`` is one linear
direction of it), so it holds what the model knows about the task, and far more than that one direction:
a classifier trained on it can use the rest. With a local LLM the annotation pass computes it anyway
(``LocalLMScorer.score_and_embed``), so the features cost nothing extra when they are cached then.

Cached on disk by text, keyed by model and rendered prompt (the shots are part of the prompt, so a new
labeled sample gives new features).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from silr.backbones.base import CachedEncoder

__all__ = ["PromptedLMEncoder", "llm_backbone", "prompt_from_dict", "prompt_to_dict"]


def prompt_to_dict(prompt) -> dict:
    """A rendered few-shot prompt as JSON (its spec and shots), enough to rebuild it exactly."""
    return {"spec": prompt.spec.to_dict(),
            "shots": [{"text": s.text, "label": int(s.label), "row": str(s.row)} for s in prompt.shots]}


def prompt_from_dict(d: dict):
    from silr.annotate.prompts import PromptSpec, Shot, build_prompt

    sp = d["spec"]
    spec = PromptSpec(instruction=sp["instruction"], positive=sp["label_words"]["positive"],
                      negative=sp["label_words"]["negative"], template=sp["template"],
                      example_template=sp["example_template"], max_text_chars=int(sp["max_text_chars"]),
                      label_meanings=sp.get("label_meanings"), name=sp.get("name", "custom"),
                      source=sp.get("source", "<saved model>"))
    return build_prompt(spec, [Shot(s["text"], int(s["label"]), s.get("row")) for s in d.get("shots", [])])


class PromptedLMEncoder(CachedEncoder):
    """Final hidden state of a local causal LM at the end of a few-shot prompt (cached by content).

    Parameters
    ----------
    prompt : FewShotPrompt or ShotPlan
        The rendered prompt (instruction, shots, template), the one the LLM labeled the corpus with. With a
        :class:`~silr.annotate.prompts.ShotPlan`, a text that is one of the shots is encoded under the plan's
        leave-itself-out prompt (as it was scored), so its features never see its own gold label.
    model : str or path
        ``gemma-3-270m`` (bundled) or a local transformers folder.
    batch_size, max_text_tokens :
        As for :class:`silr.annotate.local.LocalLMScorer`.
    layer : int, optional
        Read the state of this layer (``hidden_states[layer]`` of the model: 0 = the embeddings, the model's
        layer count = the last layer before the final norm) at the same token instead of the final normed state.
        A middle layer is a view of the text the LLM's label is *not* a linear read-out of, which suits a
        classifier trained on that label's sets; the scores still come from the final state of the same pass.
    scorer : LocalLMScorer, optional
        An already loaded scorer to share.
    """

    name = "llm"
    chunk_size = 256

    def __init__(self, prompt, model: str | Path = "gemma-3-270m", *, batch_size: int = 16,
                 max_text_tokens: int = 256, scorer=None, layer: int | None = None, **kw):
        super().__init__(**kw)
        self.plan = prompt if hasattr(prompt, "prompt_for") else None
        self.prompt = prompt.main if self.plan is not None else prompt
        self.model = str(model)
        self.batch_size = int(batch_size)
        self.max_text_tokens = int(max_text_tokens)
        self._scorer = scorer
        sc = self.scorer
        self.dim = int(sc.model.config.get_text_config().hidden_size
                       if hasattr(sc.model.config, "get_text_config") else sc.model.config.hidden_size)
        cfg = sc.model.config.get_text_config() if hasattr(sc.model.config, "get_text_config") else sc.model.config
        n_layers = int(cfg.num_hidden_layers)
        if layer is not None and not 0 <= int(layer) <= n_layers:
            raise ValueError(f"layer must be between 0 and {n_layers} for {self.model} (its hidden states), "
                             f"got {layer}")
        self.layer = None if layer is None else int(layer)
        self.model_id = f"{sc.model_id}-{self.prompt.with_hash(sc.settings_id)}-hidden" + (
            "" if self.layer is None else f"-L{self.layer}")

    @property
    def scorer(self):
        if self._scorer is None:
            from silr.annotate.local import LocalLMScorer

            self._scorer = LocalLMScorer(self.model, batch_size=self.batch_size,
                                         max_text_tokens=self.max_text_tokens)
        return self._scorer

    def prompt_groups(self, texts: list[str]) -> list[tuple[object, list[int]]]:
        """``[(prompt, indices)]``: the texts grouped by the prompt each is encoded (and scored) under."""
        if self.plan is None:
            return [(self.prompt, list(range(len(texts))))]
        groups: dict[str, tuple[object, list[int]]] = {}
        for i, t in enumerate(texts):
            p = self.plan.prompt_for(t)
            groups.setdefault(p.hash, (p, []))[1].append(i)
        return list(groups.values())

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for p, idx in self.prompt_groups(texts):
            out[idx] = self.scorer.embed([texts[i] for i in idx], p, **self._layer_kw())
        return out

    def _layer_kw(self) -> dict:
        # only a middle layer is asked for by name: a scorer without layers still serves the final state
        return {} if self.layer is None else {"layer": self.layer}

    def put(self, texts, vectors) -> None:
        """Store features computed elsewhere (the annotation pass) in this encoder's cache."""
        from silr.backbones.cache import text_key

        cache = self._cache()
        try:
            cache.put_many(zip([text_key(t) for t in texts], np.asarray(vectors, dtype=np.float32)))
        finally:
            cache.close()

    def llm_scores(self, texts) -> np.ndarray:
        """The LLM's own score of each text under the prompt (``log p(pos) - log p(neg)``): the evidence the
        stack needs for new texts. Abstentions never happen with a local model."""
        texts = list(texts)
        out = np.zeros(len(texts), dtype=np.float64)
        for p, idx in self.prompt_groups(texts):
            for i, r in self.scorer.score([texts[j] for j in idx], p):
                out[idx[i]] = r.score
        return out

    def prefill(self, texts, score_cache=None) -> int:
        """Compute, in one forward pass per batch, the features of the texts missing from this encoder's cache
        and (when ``score_cache`` is a :class:`silr.annotate.cache.ScoreCache` or a path) their scores in the
        annotation cache, so that the annotation and the features cost one pass. Returns texts computed."""
        from silr.annotate.cache import ScoreCache
        from silr.backbones.cache import text_key

        texts = list(dict.fromkeys(texts))
        fc = self._cache()
        try:
            have = fc.get_many([text_key(t) for t in texts])
        finally:
            fc.close()
        todo = [t for t in texts if text_key(t) not in have]
        if not todo:
            return 0
        from silr.progress import progress_bar

        store = score_cache if isinstance(score_cache, ScoreCache) or score_cache is None else ScoreCache(score_cache)
        try:
            with progress_bar(f"scoring and encoding with {self.model}", total=len(todo),
                              enabled=self.progress) as advance:
                for start in range(0, len(todo), self.chunk_size):  # committed chunk by chunk: resumable
                    chunk = todo[start: start + self.chunk_size]
                    self._prefill_chunk(chunk, store)
                    advance(len(chunk))
        finally:
            if store is not None and store is not score_cache:
                store.close()
        return len(todo)

    def _prefill_chunk(self, chunk, store) -> None:
        from silr.annotate.cache import text_key as score_key

        for p, idx in self.prompt_groups(chunk):
            ts = [chunk[i] for i in idx]
            res, H = self.scorer.score_and_embed(ts, p, **self._layer_kw())
            if store is not None:
                store.put_many(self.scorer.model_id, p.with_hash(self.scorer.settings_id),
                               [(score_key(t), r) for t, r in zip(ts, res)])
            self.put(ts, H)

    def spec(self) -> dict:
        return {"name": "llm", "kind": "prompted-lm", "model": self.model, "dim": self.dim,
                "batch_size": self.batch_size, "max_text_tokens": self.max_text_tokens,
                "prompt": prompt_to_dict(self.prompt), **({} if self.layer is None else {"layer": self.layer})}

    @classmethod
    def load(cls, spec: dict, folder: Path) -> "PromptedLMEncoder":
        return cls(prompt_from_dict(spec["prompt"]), spec.get("model", "gemma-3-270m"),
                   batch_size=int(spec.get("batch_size", 16)), max_text_tokens=int(spec.get("max_text_tokens", 256)),
                   layer=spec.get("layer"))


def llm_backbone(spec, labeled, text_col: str = "text", *, shots: int = 4, seed: int = 0,
                 model: str | Path = "gemma-3-270m", scorer=None, progress: bool = False,
                 cache_dir: str | Path | None = None, layer: int | None = None) -> PromptedLMEncoder:
    """The ``llm`` backbone: the annotating LLM's hidden state under the few-shot plan that
    :func:`silr.annotate.run.annotate_frame` scores with (same arguments, same prompts, same leave-itself-out
    for texts that are shots). ``labeled`` is the labeled frame given to the annotation."""
    from silr.annotate.run import shot_plan

    plan, _, _ = shot_plan(spec, labeled, text_col, shots=shots, seed=seed)
    return PromptedLMEncoder(plan, model, scorer=scorer, progress=progress, cache_dir=cache_dir, layer=layer)
