"""``python -m tarlib.robustness``: the published models on other doses and angles (section 7).

The code lives in the study (:mod:`tarlib.study.robustness`); this entry point keeps the
command recorded in ``results/round2/robustness.json`` and the docs runnable.
"""

import sys

from tarlib.study.robustness import main

if __name__ == "__main__":
    sys.exit(main())
