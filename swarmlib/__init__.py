"""swarmlib: Keras-compatible Swarm Learning, peer to peer, with no central server.

The package imports no deep-learning framework by itself; only the Keras
callback does, when it is used.
"""

from swarmlib.errors import (
    ConfigurationError,
    DtypeMismatch,
    InvalidWeight,
    MergeError,
    NonFiniteUpdate,
    PeerRejected,
    PeerTimeout,
    RoundFailed,
    ShapeMismatch,
    SwarmError,
    SwarmWarning,
    TransportError,
)
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

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "CoordinateMedian",
    "CurveKeyPair",
    "DtypeMismatch",
    "GeometricMedian",
    "InvalidWeight",
    "Krum",
    "Layout",
    "Mean",
    "MergeError",
    "MultiKrum",
    "NonFiniteUpdate",
    "Peer",
    "PeerRejected",
    "PeerTimeout",
    "RoundFailed",
    "RoundResult",
    "ShapeMismatch",
    "ShardedExchange",
    "Strategy",
    "SwarmError",
    "SwarmWarning",
    "TransportError",
    "TrimmedMean",
    "__version__",
    "flatten",
    "get_strategy",
    "unflatten",
]
