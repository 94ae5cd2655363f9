"""``python -m silr.bench.align_safety``."""

from silr.bench.align_safety import main

main()
