"""swarmlib: Keras-compatible Swarm Learning, peer to peer, with no central server.

The package imports no deep-learning framework by itself; only the Keras
callback does, when it is used.
"""

from swarmlib import errors as _errors
from swarmlib._version import __version__
from swarmlib.errors import *  # noqa: F403  (every error, listed once: errors.__all__)
from swarmlib.merge import (
    CoordinateMedian,
    GeometricMedian,
    Krum,
    Mean,
    MultiKrum,
    Strategy,
    TrimmedMean,
    get_strategy,
)
from swarmlib.params import Layout, flatten, unflatten
from swarmlib.transport import CurveKeyPair, Peer, RoundResult, ShardedExchange


def __getattr__(name: str) -> object:
    """Import the Keras callback and the middleware only when asked for (Keras is slow to load)."""
    if name == "SwarmCallback":
        from swarmlib.callback import SwarmCallback

        return SwarmCallback
    if name in ("SwarmNode", "NodeConfig", "SyncResult"):
        from swarmlib import node

        return getattr(node, name)
    if name == "run_nodes":
        from swarmlib.launcher import run_nodes

        return run_nodes
    raise AttributeError(f"module 'swarmlib' has no attribute {name!r}")


__all__ = [  # noqa: F405  (the lazily imported names are in __getattr__)
    *_errors.__all__,
    "CoordinateMedian",
    "CurveKeyPair",
    "GeometricMedian",
    "Krum",
    "Layout",
    "Mean",
    "MultiKrum",
    "NodeConfig",
    "Peer",
    "RoundResult",
    "ShardedExchange",
    "Strategy",
    "SwarmCallback",
    "SwarmNode",
    "SyncResult",
    "TrimmedMean",
    "__version__",
    "flatten",
    "get_strategy",
    "run_nodes",
    "unflatten",
]
