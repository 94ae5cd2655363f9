"""``python -m silr.cli``."""

from silr.cli import main

main()
