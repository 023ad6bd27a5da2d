"""``python -m cotj``: the command line (:mod:`cotj.cli`)."""

import sys

from cotj.cli import main

if __name__ == "__main__":
    sys.exit(main())
