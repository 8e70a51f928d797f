"""ssl-example-vicreg: an example third-party ssl-core plugin adding the VICReg objective.

ssl-core finds the objective through the entry point ``example.vicreg``; nothing
here is imported until a pipeline asks for it.

Example:
    >>> from ssl_example_vicreg import VICRegObjective
    >>> VICRegObjective(embed_dim=16, expander_dim=32).sim_coeff
    25.0
"""

from __future__ import annotations

from ._objective import VICRegObjective, expander
from .functional import covariance_loss, invariance_loss, variance_loss, vicreg_loss, vicreg_terms

__all__ = [
    "VICRegObjective",
    "__version__",
    "covariance_loss",
    "expander",
    "invariance_loss",
    "variance_loss",
    "vicreg_loss",
    "vicreg_terms",
]

__version__ = "0.1.0"
