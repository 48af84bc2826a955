"""``generative``: conditional generative model of a user's interactions given the profile.

``strategy`` is the strategy contract, ``network`` the torch networks (conditional VAE,
CFGAN), ``trainer`` their training loop and ``augmentation`` the virtual users for sparse
segments.
"""

from .augmentation import VIRTUAL_PREFIX
from .network import MODELS
from .strategy import GenerativeStrategy

__all__ = ["GenerativeStrategy", "MODELS", "VIRTUAL_PREFIX"]
