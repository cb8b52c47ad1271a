"""Peer-to-peer transport: CURVE-authenticated control, AES-GCM-sealed shards, sharded exchange."""

from swarmlib.transport.auth import CurveKeyPair
from swarmlib.transport.exchange import ShardedExchange
from swarmlib.transport.round import Peer, RoundResult, RoundStats, ShardMerge, shard_bounds

__all__ = [
    "CurveKeyPair",
    "Peer",
    "RoundResult",
    "RoundStats",
    "ShardMerge",
    "ShardedExchange",
    "shard_bounds",
]
