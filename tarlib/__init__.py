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
- :mod:`tarlib.pretrained` the published weights of those runs (``weights/``)
- :mod:`tarlib.robustness` the published models on other doses and angles (section 7)
- :mod:`tarlib.claims` the paper's claims decided on ``results/``

and the course's teaching aids: :mod:`tarlib.classical` (SVD, maximum
likelihood, Tikhonov), :mod:`tarlib.bayes` (Bayes estimators in closed form),
:mod:`tarlib.decisions` (τ, decisions, calibration) and :mod:`tarlib.plotting`.
"""

from tarlib.config import default_device, fast_mode, pick, progress, setup, versions

__version__ = "0.1.0"
__all__ = ["default_device", "fast_mode", "pick", "progress", "setup", "versions", "__version__"]
