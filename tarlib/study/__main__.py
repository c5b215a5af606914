"""``python -m tarlib.study``: the command line of the study's rounds (:mod:`tarlib.study.cli`)."""

import sys

from tarlib.study.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m tarlib.study"))
