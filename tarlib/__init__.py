"""tarlib: task-adapted reconstruction, the companion package of the course.

Adler, Lunz, Verdier, Schönlieb, Öktem, "Task adapted reconstruction for inverse
problems", Inverse Problems 38 (2022) 075006.

The library, whose modules follow the paper's pieces:

- :mod:`tarlib.physics`  the data model M = forward operator A + noise (section 2)
- :mod:`tarlib.data`     images x, labels z and triplets (x, y, z)
- :mod:`tarlib.nets`     reconstruction R_θ and task T_ϑ networks
- :mod:`tarlib.losses`   ℓ_X, ℓ_D and the joint loss of eq. (18)
- :mod:`tarlib.metrics`  accuracy, PSNR, SSIM, Dice, IoU
- :mod:`tarlib.training` the strategies of section 4
- :mod:`tarlib.experiments` the experiments of section 5: their data, networks and one run from the command line
- :mod:`tarlib.stats`   paired tests of two models on the same test images
- :mod:`tarlib.pretrained` the published weights of the study's runs (``weights/``)
- :mod:`tarlib.records` the results of the reproduction rounds, read for the course

and the course's teaching aids: :mod:`tarlib.classical` (SVD, maximum
likelihood, Tikhonov), :mod:`tarlib.bayes` (Bayes estimators in closed form),
:mod:`tarlib.decisions` (τ, decisions, calibration), :mod:`tarlib.tradeoff` (the C
trade-off of eq. (18) in a linear-Gaussian toy), :mod:`tarlib.invariance` (the
non-uniqueness of end-to-end training), :mod:`tarlib.analysis` (loss scales, Figures 2
and 3 from trained models), :mod:`tarlib.theory` (exact posteriors and information
conservation, section 6) and :mod:`tarlib.plotting`.

The study, :mod:`tarlib.study`, runs and checks the paper with the library: every run of
section 5 in reproduction rounds, their tables and figures (``python -m tarlib.reproduce``),
the robustness of section 7 (``python -m tarlib.robustness``) and the paper's claims.  It
imports the library, never the reverse.
"""

from importlib import metadata as _metadata
from importlib.util import find_spec as _find_spec

if _find_spec("torch") is None:  # one clear line rather than an ImportError deep inside tarlib.config
    raise ModuleNotFoundError("tarlib needs PyTorch: `pip install torch` (the CPU build is enough), then restart the kernel")

from tarlib.config import default_device, explain_fast_mode, fast_mode, pick, progress, setup, versions

try:  # the one version source is pyproject.toml, read from the installed package's metadata
    __version__ = _metadata.version("tarlib")
except _metadata.PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
__all__ = ["default_device", "explain_fast_mode", "fast_mode", "pick", "progress", "setup", "versions", "__version__"]
