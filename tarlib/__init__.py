"""tarlib: task-adapted reconstruction, the companion package of the course.

Adler, Lunz, Verdier, Schönlieb, Öktem, "Task adapted reconstruction for inverse
problems", Inverse Problems 38 (2022) 075006.

Modules follow the paper's pieces:

- :mod:`tarlib.physics`  the data model M = forward operator A + noise (section 2)
- :mod:`tarlib.data`     images x, labels z and triplets (x, y, z)
- :mod:`tarlib.nets`     reconstruction R_θ and task T_ϑ networks
- :mod:`tarlib.losses`   ℓ_X, ℓ_D and the joint loss of eq. (18)
- :mod:`tarlib.metrics`  accuracy, PSNR, SSIM, Dice, IoU
- :mod:`tarlib.training` the strategies of section 4
- :mod:`tarlib.experiments` the experiments of section 5 from the command line
- :mod:`tarlib.reproduce` every run of section 5, its tables and figures (``make reproduce``)
- :mod:`tarlib.round2`  the pre-registered second round (``results/PROTOCOL.md``)
- :mod:`tarlib.stats`   paired tests of two models on the same test images
- :mod:`tarlib.pretrained` the published weights of those runs (``weights/``)
- :mod:`tarlib.robustness` the published models on other doses and angles (section 7)
- :mod:`tarlib.claims` the paper's claims decided on ``results/``

and the course's teaching aids: :mod:`tarlib.classical` (SVD, maximum
likelihood, Tikhonov), :mod:`tarlib.bayes` (Bayes estimators in closed form),
:mod:`tarlib.decisions` (τ, decisions, calibration), :mod:`tarlib.tradeoff` (the C
trade-off of eq. (18) in a linear-Gaussian toy), :mod:`tarlib.invariance` (the
non-uniqueness of end-to-end training), :mod:`tarlib.analysis` (loss scales, Figures 2
and 3 from trained models), :mod:`tarlib.theory` (exact posteriors and information
conservation, section 6) and :mod:`tarlib.plotting`.
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
