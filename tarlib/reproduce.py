"""``python -m tarlib.reproduce``: the rounds of the study, as the recorded commands write it.

The command line lives in the study (:mod:`tarlib.study.cli`, also ``python -m tarlib.study``);
this entry point keeps the commands recorded in ``weights/manifest.json``, the results
and the docs runnable.
"""

import sys

from tarlib.study.cli import main

if __name__ == "__main__":
    sys.exit(main())
