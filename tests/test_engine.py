"""The engine seam without a cluster: choices are checked with clear messages, the local engine is the default and
is recorded in rounds.json, and a missing Ray names the extra to install."""

from __future__ import annotations

import builtins
import sys

import pytest

from silr.engine import EngineError, require_ray, resolve_engine


def test_resolve_engine_defaults_and_errors():
    assert resolve_engine().kind == "local" and not resolve_engine().is_ray
    e = resolve_engine("ray", "ray://head:10001", workers=3, rows_per_shard=10)
    assert e.is_ray and e.address == "ray://head:10001" and e.workers == 3 and e.rows_per_shard == 10
    assert resolve_engine("RAY", "auto").address == "auto"
    with pytest.raises(EngineError, match="unknown engine 'spark'; choose one of: local, ray"):
        resolve_engine("spark")
    with pytest.raises(EngineError, match="needs the ray engine"):
        resolve_engine("local", "auto")
    with pytest.raises(EngineError, match="ray address must be"):
        resolve_engine("ray", "nonsense")
    with pytest.raises(EngineError, match="rows_per_shard must be >= 1"):
        resolve_engine("ray", rows_per_shard=0)


def test_missing_ray_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *a, **k)

    for m in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, m)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(EngineError, match=r"pip install 'silr\[ray\]'"):
        require_ray()


def test_engine_modules_do_not_import_ray():
    import subprocess

    code = ("import silr.cli, silr.engine, silr.engine.shards, silr.engine.features, silr.engine.stream_head, "
            "silr.engine.ray_refine, silr.engine.ray_annotate, silr.engine.ray_predict, sys; "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_config_engine_section(tmp_path):
    from silr.io import InputError
    from silr.job import _job_engine, config_from_dict

    cfg = config_from_dict({"engine": {"kind": "ray", "address": "auto", "workers": 2}})
    e = _job_engine(cfg)
    assert e.is_ray and e.address == "auto" and e.workers == 2
    assert not _job_engine(config_from_dict({})).is_ray
    with pytest.raises(InputError, match=r"\[engine\]: unknown engine 'dask'"):
        config_from_dict({"engine": {"kind": "dask"}})
    with pytest.raises(InputError, match="unknown key 'nodes' in \\[engine\\]"):
        config_from_dict({"engine": {"nodes": 3}})


def test_cli_rejects_a_bad_engine(tmp_path):
    from typer.testing import CliRunner

    from silr.cli import app

    corpus = tmp_path / "c.csv"
    corpus.write_text("text,pseudo\na,1\nb,0\n")
    r = CliRunner().invoke(app, ["refine", str(corpus), "--pseudo-col", "pseudo", "--labeled", str(corpus),
                                 "--out", str(tmp_path / "o"), "--engine", "spark"])
    assert r.exit_code == 1 and "unknown engine 'spark'" in r.output + str(r.exception)
    r = CliRunner().invoke(app, ["annotate", str(corpus), "--out", str(tmp_path / "a.csv"), "--prompt", "sentiment",
                                 "--engine", "local", "--ray-address", "auto"])
    assert r.exit_code == 1 and "needs the ray engine" in r.output + str(r.exception)
