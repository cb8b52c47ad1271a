"""Peer-to-peer transport: CURVE-authenticated control, AES-GCM-sealed shards, sharded exchange."""

from swarmlib.transport.auth import CurveKeyPair
from swarmlib.transport.exchange import Peer, RoundResult, RoundStats, ShardedExchange, shard_bounds

__all__ = ["CurveKeyPair", "Peer", "RoundResult", "RoundStats", "ShardedExchange", "shard_bounds"]
