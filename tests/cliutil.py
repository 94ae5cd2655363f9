"""Run the silr command line inside the test process (fast, for error paths)."""

import sys


def silr_inproc(capsys, *args):
    """Run ``silr ARGS`` in this process: returns (exit code, stdout, stderr)."""
    from silr.cli import main

    old = sys.argv
    sys.argv = ["silr", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err
