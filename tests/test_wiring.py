"""The one-place wiring: annotator factory, input builder and labeled-row lookup, cache keys, registries of
backbones and risks, the JSON encoder and the command line's error printer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from silr.io import InputError


# -- annotator factory ------------------------------------------------------------------------------------
def test_factory_builds_the_server_client_with_every_setting(monkeypatch):
    from silr.annotate.factory import make_annotator
    from silr.annotate.server import OpenAICompatibleAnnotator

    monkeypatch.delenv("SILR_OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    a = make_annotator("openai:m", base_url="http://127.0.0.1:9/v1", api="completions", concurrency=3, timeout=7.5)
    try:
        assert isinstance(a, OpenAICompatibleAnnotator)
        assert (a.api, a.concurrency, a.timeout, a._api_key) == ("completions", 3, 7.5, "sk-from-env")
    finally:
        a.close()
    b = make_annotator("openai:m", base_url="http://127.0.0.1:9/v1", api_key="sk-given")
    try:
        assert b._api_key == "sk-given" and b.timeout == 60.0  # the `silr annotate` default
    finally:
        b.close()


def test_run_config_reaches_the_factory(monkeypatch, tmp_path):
    """`silr run`'s [annotator] timeout and api reach the server client (the old runner dropped them)."""
    import silr.annotate.factory as factory
    from silr.job import config_from_dict, run_job

    seen = {}

    def fake(model, **kw):
        seen.update(kw, model=model)
        raise InputError("stop here")

    monkeypatch.setattr(factory, "make_annotator", fake)
    pd.DataFrame({"text": ["a", "b", "c", "d"], "gold": [1, 0, 1, 0]}).to_csv(tmp_path / "c.csv", index=False)
    cfg = config_from_dict({"data": {"corpus": "c.csv", "gold_col": "gold"}, "labeled": {"sample_from_gold": 2},
                            "annotator": {"model": "openai:m", "base_url": "http://x/v1", "timeout": 5,
                                          "api": "completions", "instruction": "Good?", "label_words": "yes,no"}},
                           base_dir=tmp_path)
    with pytest.raises(InputError, match="stop here"):
        run_job(cfg, tmp_path / "out", echo=lambda m: None, progress=False)
    assert seen["model"] == "openai:m" and seen["timeout"] == 5.0 and seen["api"] == "completions"
    assert seen["base_url"] == "http://x/v1"


def test_config_rejects_a_wrong_type_for_the_new_keys():
    from silr.job import config_from_dict

    with pytest.raises(InputError, match="timeout"):
        config_from_dict({"annotator": {"timeout": "soon"}})


# -- inputs ---------------------------------------------------------------------------------------------------
def test_labeled_rows_take_the_first_corpus_row_with_their_text():
    from silr.inputs import labeled_from_corpus

    lp, ls = labeled_from_corpus(["a", "b", "a"], np.array([1, 0, 0]), ["a", "b"], score=np.array([2.0, -1.0, 5.0]))
    assert lp.tolist() == [1, 0] and ls.tolist() == [2.0, -1.0]
    with pytest.raises(InputError, match=r"labeled file 'l.csv': 2 of 3 rows \(lines 3, 4\) have no pseudo-label"):
        labeled_from_corpus(["a"], np.array([1]), ["a", "x", "y"], what="labeled file 'l.csv'")


def test_annotated_frame_and_files_give_the_same_inputs(tmp_path):
    """`silr run` (annotated frame) and `silr refine` (files) build the same inputs from the same rows."""
    from silr.inputs import inputs_from_annotation, load_refine_inputs

    corpus = pd.DataFrame({"text": ["good", "bad", "fine", "awful", "meh"], "pseudo_label": [1, 0, 1, 0, None],
                           "llm_score": [2.0, -2.0, 0.5, -1.0, 0.0]})
    labeled = pd.DataFrame({"text": ["good", "awful"], "label": [1, 0]})
    a, keep = inputs_from_annotation(corpus, labeled, text_col="text", pseudo_col="pseudo_label", use_llm_score=True,
                                     corpus_path="c.csv", labeled_path="l.csv")
    assert keep.tolist() == [True, True, True, True, False]
    corpus.iloc[:4].to_csv(tmp_path / "c.csv", index=False)
    labeled.to_csv(tmp_path / "l.csv", index=False)
    b = load_refine_inputs(tmp_path / "c.csv", tmp_path / "l.csv", pseudo_col="pseudo_label", score_col="llm_score")
    assert a.texts == b.texts and a.labeled_texts == b.labeled_texts
    for k in ("pseudo", "labeled_y", "labeled_pseudo", "llm_score", "labeled_llm_score"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


# -- caches ---------------------------------------------------------------------------------------------------
def test_both_caches_use_one_key_and_one_folder(monkeypatch):
    import silr.annotate.cache as scores
    import silr.annotate.local as local
    import silr.backbones.cache as features
    from silr.cache_keys import default_cache_dir, text_key

    assert scores.text_key is features.text_key is text_key
    assert local.default_cache_dir is features.default_cache_dir is default_cache_dir
    monkeypatch.setenv("SILR_CACHE_DIR", "~/somewhere")
    assert default_cache_dir() == Path.home() / "somewhere"  # ~ expanded for both caches
    monkeypatch.delenv("SILR_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "silr"


# -- registries -------------------------------------------------------------------------------------------------
def test_a_backbone_is_one_registry_entry(monkeypatch):
    import sys
    import types

    import silr.backbones as bb
    from silr.backbones.ngram import NgramBackbone

    class Tiny(NgramBackbone):
        pass

    mod = types.ModuleType("silr_test_tiny_backbone")
    mod.Tiny = Tiny
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(bb.BACKBONES, "tiny", bb.BackboneSpec(f"{mod.__name__}:Tiny", "tiny-kind"))
    b = bb.get_backbone("tiny")
    assert type(b) is Tiny
    assert "tiny" in bb.BACKBONES and bb.get_backbone("ngram").spec()["kind"] == bb.BACKBONES["ngram"].kind


def test_a_risk_is_one_registry_entry(monkeypatch):
    from silr import risks

    monkeypatch.setitem(risks.CORPUS_RISKS, "zero", lambda scores, pseudo, weights, slope: scores.sum() * 0)
    w = risks.UUWeights.from_priors(0.5, 0.8, 0.2)
    s, p = torch.tensor([0.3, -0.2]), torch.tensor([1, 0])
    assert float(risks.batch_risk("zero", s, p, w)) == 0.0
    assert torch.equal(risks.batch_risk("uu", s, p, w), risks.uu_risk(s, p, w))
    with pytest.raises(ValueError, match="unknown risk 'nope'; choose one of robust_uu, uu, pn"):
        risks.batch_risk("nope", s, p, w)


# -- JSON and errors ----------------------------------------------------------------------------------------------
def test_one_json_encoder_for_numpy_values():
    import json

    from silr.io import json_default

    assert json.loads(json.dumps({"a": np.int64(3), "b": np.float32(0.5), "c": np.arange(2), "d": np.bool_(True)},
                                 default=json_default)) == {"a": 3, "b": 0.5, "c": [0, 1], "d": True}
    with pytest.raises(TypeError, match="cannot write a object value"):
        json.dumps(object(), default=json_default)


def test_errors_print_as_one_line_with_the_secret_redacted(capsys):
    from silr.cli.errors import Failure, reported

    with pytest.raises(SystemExit) as e, reported(redact="sk-SECRET"):
        raise Failure("bad key sk-SECRET\n  in file x.csv")
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err == "error: bad key *** in file x.csv\n"
