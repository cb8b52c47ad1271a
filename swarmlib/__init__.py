"""swarmlib: Keras-compatible Swarm Learning, peer to peer, with no central server.

The package imports no deep-learning framework by itself; only the Keras
callback does, when it is used.
"""

from swarmlib.errors import (
    AlreadyAdmin,
    AlreadyMember,
    AlreadyVoted,
    ChainUnreachable,
    ConfigurationError,
    ContractMismatch,
    ContractRevert,
    DtypeMismatch,
    FetchFailed,
    IdentityError,
    IdentityUnavailable,
    InsufficientFunds,
    InvalidRegistration,
    InvalidSessionParameters,
    InvalidSpiffeId,
    InvalidWeight,
    LastAdmin,
    LedgerError,
    MergeError,
    NoContract,
    NodeProcessFailed,
    NonFiniteUpdate,
    NotAdmin,
    NotAMember,
    NotRegistered,
    PeerIdentityRejected,
    PeerRejected,
    PeerTimeout,
    PreviousAttemptOpen,
    QuorumNotReached,
    QuorumTimeout,
    QuorumWaitNotOver,
    RoundClosed,
    RoundFailed,
    RoundNotOpen,
    SessionExists,
    ShapeMismatch,
    SwarmEnded,
    SwarmError,
    SwarmWarning,
    TransactionFailed,
    TransportError,
    UnknownSession,
    WrongChain,
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


def __getattr__(name: str) -> object:
    """Import the Keras callback and the middleware only when asked for (Keras is slow to load)."""
    if name == "SwarmCallback":
        from swarmlib.callback import SwarmCallback

        return SwarmCallback
    if name in ("SwarmNode", "NodeConfig"):
        from swarmlib import node

        return getattr(node, name)
    if name == "run_nodes":
        from swarmlib.launcher import run_nodes

        return run_nodes
    raise AttributeError(f"module 'swarmlib' has no attribute {name!r}")


__all__ = [
    "AlreadyAdmin",
    "AlreadyMember",
    "AlreadyVoted",
    "ChainUnreachable",
    "ConfigurationError",
    "ContractMismatch",
    "ContractRevert",
    "CoordinateMedian",
    "CurveKeyPair",
    "DtypeMismatch",
    "FetchFailed",
    "GeometricMedian",
    "IdentityError",
    "IdentityUnavailable",
    "InsufficientFunds",
    "InvalidRegistration",
    "InvalidSessionParameters",
    "InvalidSpiffeId",
    "InvalidWeight",
    "Krum",
    "LastAdmin",
    "Layout",
    "LedgerError",
    "Mean",
    "MergeError",
    "MultiKrum",
    "NoContract",
    "NodeConfig",
    "NodeProcessFailed",
    "NonFiniteUpdate",
    "NotAMember",
    "NotAdmin",
    "NotRegistered",
    "Peer",
    "PeerIdentityRejected",
    "PeerRejected",
    "PeerTimeout",
    "PreviousAttemptOpen",
    "QuorumNotReached",
    "QuorumTimeout",
    "QuorumWaitNotOver",
    "RoundClosed",
    "RoundFailed",
    "RoundNotOpen",
    "RoundResult",
    "SessionExists",
    "ShapeMismatch",
    "ShardedExchange",
    "Strategy",
    "SwarmCallback",
    "SwarmEnded",
    "SwarmError",
    "SwarmNode",
    "SwarmWarning",
    "TransactionFailed",
    "TransportError",
    "TrimmedMean",
    "UnknownSession",
    "WrongChain",
    "__version__",
    "flatten",
    "get_strategy",
    "run_nodes",
    "unflatten",
]
