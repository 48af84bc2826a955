"""``behavior``: a small Transformer over the first events of a user or session.

``strategy`` is the strategy contract, ``tokens`` turns events into the network's token
arrays, ``network`` is the Transformer and ``trainer`` its training loop.
"""

from .strategy import TEXT_ENCODERS, BehaviorStrategy
from .tokens import dwell_buckets, event_codes

__all__ = ["BehaviorStrategy", "TEXT_ENCODERS", "dwell_buckets", "event_codes"]
