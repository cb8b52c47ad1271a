"""The state of one round on one node, and the checks every incoming message passes.

Nothing here touches a socket: :class:`RoundState` takes parsed messages and
says whether they moved the round forward (``True``), were dropped (``False``,
counted and logged) or failed the round (``state.abort`` is set). The sockets
live in :mod:`swarmlib.transport.sockets`, the phases in
:mod:`swarmlib.transport.exchange`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import zmq

from swarmlib.errors import (
    ConfigurationError,
    IdentityError,
    PeerRejected,
    PeerTimeout,
    RoundFailed,
    SwarmError,
)
from swarmlib.transport import crypto, secagg
from swarmlib.transport.framing import (
    ABORT,
    CONTRIB,
    DONE,
    HAVE,
    KEY,
    MERGED,
    REDUCE,
    REVEAL,
    encode_header,
    parse_header,
    payload_nbytes,
)
from swarmlib.transport.replicas import Vote, blame, majority, outvoted, owned_by, owners_of

__all__ = [
    "Peer",
    "RoundResult",
    "RoundState",
    "RoundStats",
    "ShardMerge",
    "check_round",
    "check_vectors",
    "drop_unexpected",
    "sent_to",
    "shard_bounds",
]

logger = logging.getLogger(__name__)

PENDING_LIMIT = 8  # shards held per sender while its key is still on the way
_TCP_ENDPOINT = re.compile(r"tcp://[A-Za-z0-9.\-\[\]:]{1,255}:[0-9]{1,5}")

#: Why a message was dropped (the keys of :attr:`RoundStats.drops`).
MALFORMED = "malformed"  # unparsable, or of the wrong size, shape, dtype or channel
STALE = "stale"  # for another round or attempt
FOREIGN = "foreign"  # from a non-participant, or claiming another sender
REPLAYED = "replayed"  # a second copy of a message already taken
TAMPERED = "tampered"  # failed authentication: changed, or sealed with another key
FLOOD = "flood"  # more shards before the sender's key than are held


class ShardMerge(Protocol):
    """How an owner merges its shard (e.g. :meth:`swarmlib.merge.Strategy.sharded`).

    ``merge(shards, weights, names, offset)`` returns a generator that yields
    float64 partials to be summed over all owners, receives each total and
    returns the merged shard; it raises :class:`~swarmlib.errors.MergeError`
    with ``peer`` set to refuse that peer's update. ``spec`` names the merge:
    participants compare it before they exchange. A merge may also say it is
    ``linear`` (a weighted mean), which secure aggregation requires.
    """

    @property
    def spec(self) -> str: ...

    def __call__(
        self, shards: list[np.ndarray], weights: list[float], names: list[str], offset: int
    ) -> Generator[np.ndarray, np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Peer:
    """A participant of a round.

    Attributes:
        name: Human-readable name used in logs and errors (e.g. its SPIFFE ID).
        endpoint: Its control endpoint, ``tcp://host:port`` (CURVE server).
        public_key: Its Z85-encoded CURVE public key (40 bytes).
    """

    name: str
    endpoint: str
    public_key: bytes


@dataclass
class RoundStats:
    """What one round cost on this node, and what it refused.

    ``drops`` counts the messages dropped by reason (``"malformed"``,
    ``"stale"``, ``"foreign"``, ``"replayed"``, ``"tampered"``, ``"flood"``);
    ``dropped`` is their total.
    """

    round_id: int
    attempt: int
    participants: tuple[str, ...]
    bytes_sent: int = 0
    bytes_received: int = 0
    dropped: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    keys_s: float = 0.0
    scatter_s: float = 0.0
    merge_s: float = 0.0
    gather_s: float = 0.0
    total_s: float = 0.0


@dataclass(frozen=True)
class RoundResult:
    """The merged vector (identical on every participant), its SHA-256 and the round's stats.

    ``contribution`` is the SHA-256 of the vector this node sent (its bytes as
    given, before any masking): what its round receipt on chain records.
    ``outvoted`` names each owner whose merged copy (or reduce partial) the shard's
    other owners outvoted, with the SHA-256 of that copy: the round took the
    majority's copy, and the evidence is for the chain (``report``).
    """

    vector: np.ndarray
    sha256: str
    stats: RoundStats
    contribution: str = ""
    outvoted: dict[str, bytes] = field(default_factory=dict)


def shard_bounds(length: int, n: int) -> list[tuple[int, int]]:
    """Cut ``length`` values into ``n`` contiguous shards; the first ``length % n`` get one more."""
    base, extra = divmod(length, n)
    bounds, start = [], 0
    for i in range(n):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def check_round(
    peers: Sequence[Peer],
    me: bytes,
    round_id: int,
    attempt: int,
    weight: float,
    last: tuple[int, int] | None,
) -> int:
    """Check a round's arguments; returns this node's index (``me`` is its public key).

    Raises:
        ConfigurationError: duplicated peers, this node missing, a round or
            attempt that does not come after ``last``, a bad weight.
    """
    keys = [p.public_key for p in peers]
    if len(set(keys)) != len(keys) or len({p.endpoint for p in peers}) != len(peers):
        raise ConfigurationError("Participants must have distinct public keys and endpoints.")
    if me not in keys:
        raise ConfigurationError(
            f"This node (public key {me.decode()}) is not in the participant "
            "list; pass the list agreed for this round, this node included."
        )
    if round_id < 0 or attempt < 0:
        raise ConfigurationError("`round_id` and `attempt` must be >= 0.")
    if last is not None and (round_id, attempt) <= last:
        raise ConfigurationError(
            f"Round {round_id} attempt {attempt} comes after round {last[0]} attempt "
            f"{last[1]} on this node: rounds and attempts only go forward (retry a "
            "failed round as `attempt + 1`), so that no message of an earlier try is "
            "taken for one of this try."
        )
    if not (np.isfinite(weight) and weight > 0):
        raise ConfigurationError(
            f"Invalid value for argument `weight`. Received: weight={weight!r}. "
            "Expected a positive finite number (e.g. the number of training samples)."
        )
    return keys.index(me)


def check_vectors(vector: np.ndarray, out: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """This node's vector as a little-endian contiguous array, and where the merge goes.

    Raises:
        ConfigurationError: not a 1-D float vector, or an unfit ``out``.
    """
    arr = np.asarray(vector)
    if arr.ndim != 1 or arr.dtype.kind != "f":
        raise ConfigurationError(
            f"Expected a 1-D floating-point vector; got shape {arr.shape} dtype {arr.dtype}. "
            "Use swarmlib.params.flatten() on a list of arrays."
        )
    own = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))  # no copy if it is
    if out is None:
        return own, np.empty_like(own)
    if out.shape != own.shape or out.dtype != own.dtype or not out.flags.c_contiguous:
        raise ConfigurationError(
            f"`out` must be a contiguous {own.dtype} array of shape {own.shape}; got "
            f"{out.dtype} {out.shape}."
        )
    if np.shares_memory(out, own):
        raise ConfigurationError("`out` must not share memory with `vector`.")
    return own, out


@dataclass
class RoundState:
    """State of the round in progress on this node.

    ``agreement`` is what every participant must share beyond the model's size
    and dtype (the merge rule, say); ``verify_peer`` checks a participant's
    credentials; ``buffer`` hands out a receive buffer for a contribution.
    With ``secure`` (secure aggregation) contributions are masked ring elements
    (:mod:`swarmlib.transport.secagg`) and the ``have``/``reveal`` phase comes
    between the scatter and the merge. With ``replicas`` > 1 every shard has that
    many owners (:mod:`swarmlib.transport.replicas`): contributions, merged copies
    and reduce partials are keyed by (sender, shard).
    """

    round_id: int
    attempt: int
    peers: list[Peer]
    me: int
    dtype: np.dtype[Any]
    bounds: list[tuple[int, int]]
    agreement: str
    encrypted: bool
    out: np.ndarray
    stats: RoundStats
    name: str = ""
    verify_peer: Callable[[Peer, bytes], None] | None = None
    buffer: Callable[[int, np.dtype[Any]], np.ndarray] = np.empty
    index_by_key: dict[str, int] = field(default_factory=dict)
    weight: float = 1.0
    secure: bool = False
    replicas: int = 1
    send_keys: dict[int, bytes] = field(default_factory=dict)
    recv_keys: dict[int, bytes | None] = field(default_factory=dict)
    data_endpoints: dict[int, str] = field(default_factory=dict)
    contribs: dict[tuple[int, int], tuple[np.ndarray, float]] = field(default_factory=dict)
    merged_from: set[tuple[int, int]] = field(default_factory=set)  # (owner, shard) taken
    merged_mine: set[int] = field(default_factory=set)  # shards this node has merged
    final: set[int] = field(default_factory=set)  # shards of ``out`` that are settled
    copies: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)  # shard: owner: copy
    disputes: dict[int, Vote] = field(default_factory=dict)  # shards without a majority copy
    outvoted: dict[int, bytes] = field(default_factory=dict)  # owner: SHA-256 of its lost copy
    done_from: set[int] = field(default_factory=set)
    reduces: dict[int, dict[tuple[int, int], np.ndarray]] = field(default_factory=dict)
    pending: dict[int, list[tuple[dict[str, Any], bytes, zmq.Frame]]] = field(default_factory=dict)
    sent_ctl: dict[int, list[list[bytes]]] = field(default_factory=dict)
    hasher: Any = field(default_factory=hashlib.sha256)
    hashed: int = 0  # shards 0..hashed-1 of ``out`` are final and fed to ``hasher``
    next_reduce: int = 0
    abort: RoundFailed | None = None
    weights: dict[int, float] = field(default_factory=dict)  # from the key messages
    mask_parts_sent: dict[int, bytes] = field(default_factory=dict)
    mask_parts_recv: dict[int, bytes] = field(default_factory=dict)
    self_keys: dict[int, bytes] = field(default_factory=dict)  # self-mask key per owner
    have_from: set[int] = field(default_factory=set)
    reveals: dict[int, bytes] = field(default_factory=dict)
    revealed: bool = False  # this node sent its self-mask keys: an owner may hold a sum
    pairs: dict[int, bytes] | None = None  # the mask key shared with each participant
    streams: secagg.Keystreams = field(default_factory=secagg.Keystreams)

    @property
    def contrib_dtype(self) -> np.dtype[Any]:
        """How contributions travel: the model's dtype, or ring elements when secure."""
        return secagg.RING_DTYPE if self.secure else self.dtype

    @property
    def others(self) -> list[int]:
        return [j for j in range(len(self.peers)) if j != self.me]

    def names(self, idx: Sequence[int]) -> list[str]:
        return [self.peers[j].name for j in idx]

    # ----------------------------------------------------------------- owners

    def owners(self, shard: int) -> list[int]:
        """The participants that merge ``shard``."""
        return owners_of(shard, len(self.peers), self.replicas)

    @property
    def owned(self) -> list[int]:
        """The shards this node merges."""
        return owned_by(self.me, len(self.peers), self.replicas)

    def sends(self) -> list[tuple[int, int]]:
        """(shard, owner) for every contribution this node sends: each shard to its owners."""
        return [(k, o) for k in range(len(self.peers)) for o in self.owners(k) if o != self.me]

    def expected(self, phase: str) -> list[tuple[int, int]]:
        """(sender, shard) of every contribution, or every merged copy or partial, due here."""
        if phase == CONTRIB:
            return [(j, k) for k in self.owned for j in self.others]
        return [(o, k) for k in range(len(self.peers)) for o in self.owners(k) if o != self.me]

    def mark_merged(self, shard: int) -> None:
        """This node's merge of ``shard`` is in ``out``."""
        self.merged_mine.add(shard)
        self.settle(shard)

    def settle(self, shard: int) -> None:
        """Take ``shard`` once every owner's copy is here, if more than half of them agree.

        A shard whose copies disagree is recorded in ``disputes``.
        """
        owners = self.owners(shard)
        if shard in self.final or (self.me in owners and shard not in self.merged_mine):
            return
        a, b = self.bounds[shard]
        if self.replicas == 1:  # the single owner's copy went straight into ``out``
            if shard in self.merged_mine or (shard, shard) in self.merged_from:
                self.final.add(shard)
                self.hash_ready_shards()
            return
        got = self.copies.get(shard, {})
        if any(o not in got for o in owners if o != self.me):
            return
        copies = {**got, **({self.me: self.out[a:b]} if self.me in owners else {})}
        vote = self.judge(shard, copies)
        if vote.winner is None:  # judged once every copy is here (see :meth:`disputed`)
            self.copies[shard] = copies
            return
        if vote.winner != self.me:
            self.out[a:b] = copies[vote.winner]
        self.final.add(shard)
        self.copies.pop(shard, None)
        self.hash_ready_shards()

    def judge(self, shard: int, copies: dict[int, np.ndarray]) -> Vote:
        """Compare a shard's copies: record an outvoted owner's evidence; without a
        majority, record the shard in ``disputes``."""
        vote = majority(copies)
        if vote.winner is not None and not np.isfinite(copies[vote.winner]).all():
            vote = Vote(None, sorted(copies))  # a majority of owners colluded on NaN or Inf
        if vote.winner is None:
            self.disputes[shard] = vote
        elif vote.dissenters:
            self.outvoted.update(outvoted({shard: vote}, {shard: copies}))
        return vote

    def disputed(self, what: str) -> PeerRejected:
        """The error for shards whose owners' copies have no majority: all their owners."""
        culprits, why = blame(what, self.disputes, [p.name for p in self.peers])
        return self.reject_many(culprits, why)

    def outvoted_names(self) -> dict[str, bytes]:
        """:attr:`RoundResult.outvoted`: each outvoted owner by name, with its evidence."""
        return {self.peers[o].name: h for o, h in sorted(self.outvoted.items())}

    def hash_ready_shards(self) -> None:
        """Feed the hash with every final shard, in order, as soon as it is there.

        Hashing while other shards are still on the wire hides most of its cost.
        """
        while self.hashed < len(self.peers) and self.hashed in self.final:
            a, b = self.bounds[self.hashed]
            self.hasher.update(self.out[a:b].data.cast("B"))
            self.hashed += 1

    def header(self, kind: str, to: int, **fields: Any) -> bytes:
        """A header of this round and attempt, from this node to participant ``to``."""
        return encode_header(kind, r=self.round_id, a=self.attempt, s=self.me, t=to, **fields)

    def key_frames(self, j: int, data_endpoint: str, creds: bytes | None) -> list[bytes]:
        """The ``key`` message to participant ``j``: model facts, a fresh AES key, credentials."""
        header = self.header(
            KEY,
            j,
            n=self.out.size,
            dt=self.dtype.str,
            st=self.agreement,
            data=data_endpoint,
            enc=self.encrypted,
            cred=creds is not None,
            w=float(self.weight),
        )
        frames = [header]
        if self.encrypted:
            self.send_keys[j] = crypto.new_key()
            frames.append(self.send_keys[j])
        if self.secure:
            self.mask_parts_sent[j] = secagg.new_seed()
            frames.append(self.mask_parts_sent[j])
        if creds is not None:
            frames.append(creds)
        return frames

    def contrib_frames(
        self, j: int, shard: int, own: np.ndarray, spare: Callable[[int], bytearray | None]
    ) -> list[Any]:
        """The ``contrib`` to owner ``j``: ``shard`` of this node's vector, with its weight.

        With secure aggregation, the shard encoded and masked for owner ``j``.
        """
        a, b = self.bounds[shard]
        values = self.masked_for(j, own[a:b]) if self.secure else own[a:b]
        return self._sealed(j, CONTRIB, shard, values, {"w": float(self.weight)}, spare)

    def merged_frames(
        self, j: int, shard: int, spare: Callable[[int], bytearray | None]
    ) -> list[Any]:
        """The ``merged`` to participant ``j``: a shard this node owns, merged."""
        a, b = self.bounds[shard]
        return self._sealed(j, MERGED, shard, self.out[a:b], {}, spare)

    def _sealed(
        self,
        j: int,
        kind: str,
        shard: int,
        values: np.ndarray,
        fields: dict[str, Any],
        spare: Callable[[int], bytearray | None],
    ) -> list[Any]:
        """Header and payload for ``j``, sealed with the key sent to ``j`` (into ``spare``)."""
        payload = values.data.cast("B")
        nonce = crypto.new_nonce() if self.encrypted else b""
        header = self.header(
            kind, j, i=shard, dt=values.dtype.str, n=values.size, nonce=nonce.hex(), **fields
        )
        if not self.encrypted:
            return [header, payload]
        out = spare(len(payload) + crypto.TAG_BYTES)
        return [header, crypto.seal(self.send_keys[j], nonce, header, payload, out=out)]

    # ------------------------------------------------------ secure aggregation

    def shares(self) -> list[float]:
        """Every participant's share of the merge, from the weights in the key messages."""
        return secagg.shares([self.weight if j == self.me else self.weights[j]
                              for j in range(len(self.peers))])  # fmt: skip

    def pair_keys(self) -> dict[int, bytes]:
        """The mask key this node shares with each other participant this attempt."""
        keys = {}
        for j in self.others:
            mine, theirs = self.mask_parts_sent[j], self.mask_parts_recv[j]
            lo, hi = sorted((self.me, j))
            parts = (mine, theirs) if self.me < j else (theirs, mine)
            keys[j] = secagg.pair_key(*parts, lo, hi, self.round_id, self.attempt, self.agreement)
        return keys

    def masked_for(self, owner: int, values: np.ndarray) -> np.ndarray:
        """This node's slice of ``owner``'s shard, encoded and masked (a fresh self-mask key)."""
        if self.pairs is None:
            self.pairs = self.pair_keys()
        self.self_keys[owner] = secagg.new_seed()
        share = self.shares()[self.me]
        return secagg.masked_shard(values, share, owner, self.me, self.self_keys[owner],
                                   self.pairs, self.streams)  # fmt: skip

    def secure_sum(self, own: np.ndarray) -> np.ndarray:
        """The merged shard this node owns: every masked slice summed and unmasked."""
        a, b = self.bounds[self.me]
        merged = np.empty(b - a, dtype=self.dtype)
        masked = [self.contribs[j, self.me][0] for j in self.others]
        keys = [self.reveals[j] for j in self.others]
        secagg.unmasked_sum(own[a:b], self.shares()[self.me], self.me, masked, keys,
                            self.streams, merged)  # fmt: skip
        return merged

    def abort_header(self, err: BaseException) -> bytes:
        """The ``abort`` every participant is told when this node gives up the attempt."""
        culprits = [
            j
            for j, p in enumerate(self.peers)
            if isinstance(err, RoundFailed) and p.name in err.culprits
        ]
        return self.header(
            ABORT, 0, c=culprits, why=str(err)[:400], timeout=isinstance(err, PeerTimeout)
        )

    def is_current(self, header: dict[str, Any]) -> bool:
        return bool(header["r"] == self.round_id and header["a"] == self.attempt)

    def is_future(self, header: dict[str, Any]) -> bool:
        return bool((header["r"], header["a"]) > (self.round_id, self.attempt))

    # ----------------------------------------------------------------- errors

    def drop(self, kind: str, reason: str, level: int = logging.WARNING) -> bool:
        """Count (by ``kind``) and log a message that is not taken; returns False.

        Only the first drop of each kind in a round is logged at ``level``; the rest
        at debug level, so that a flood of junk does not flood the log too.
        """
        self.stats.dropped += 1
        seen = self.stats.drops.get(kind, 0)
        self.stats.drops[kind] = seen + 1
        logger.log(level if not seen else logging.DEBUG, "%s dropped a message: %s%s",
                   self.name, reason, "" if not seen else " (and more of its kind)")  # fmt: skip
        return False

    def reject(self, j: int, reason: str) -> PeerRejected:
        return self.reject_many([j], reason)

    def reject_many(self, culprits: Sequence[int], reason: str) -> PeerRejected:
        names = self.names(culprits)
        return PeerRejected(
            f"Round {self.round_id} attempt {self.attempt}: refused {', '.join(names)}: {reason}",
            culprits=names,
            round_id=self.round_id,
            attempt=self.attempt,
        )

    def missing(self, phase: str) -> list[int]:
        """The participants whose ``phase`` message this node still waits for."""
        got: Any = {
            KEY: self.recv_keys,
            DONE: self.done_from,
            HAVE: self.have_from,
            REVEAL: self.reveals,
        }.get(phase)
        if got is not None:
            return [j for j in self.others if j not in got]
        taken: Any = {CONTRIB: self.contribs, MERGED: self.merged_from}.get(phase)
        if taken is None:  # the reduce in progress
            taken = self.reduces.get(self.next_reduce - 1, {})
        return sorted({j for j, k in self.expected(phase) if (j, k) not in taken})

    def shards_to_merge(
        self, own: np.ndarray, weight: float, shard: int
    ) -> tuple[list[int], list[np.ndarray], list[float]]:
        """Participants in name order, with their slices of ``shard`` and their weights.

        The order is the participants' names, not their votes': float sums depend
        on order, and a swarm should give the same model however its votes raced.
        """
        a, b = self.bounds[shard]
        order = sorted(range(len(self.peers)), key=lambda j: self.peers[j].name)
        shards, weights = [], []
        for j in order:
            values, w = (own[a:b], weight) if j == self.me else self.contribs[j, shard]
            shards.append(values)
            weights.append(w)
        return order, shards, weights

    def timeout_error(self, phase: str, timeout: float) -> PeerTimeout:
        names = self.names(self.missing(phase))
        return PeerTimeout(
            f"Round {self.round_id} attempt {self.attempt}: no {phase} message from "
            f"{', '.join(names)} within {timeout:g}s. Retry the round without "
            f"{'it' if len(names) == 1 else 'them'}.",
            culprits=names,
            round_id=self.round_id,
            attempt=self.attempt,
        )

    # ------------------------------------------------------- control messages

    def on_control_frames(
        self, frames: Sequence[zmq.Frame], early: deque[tuple[dict[str, Any], str, list[bytes]]]
    ) -> bool:
        """A message from the control socket; one for a later round is kept in ``early``."""
        header, reason = parse_header(frames[0].buffer)
        if header is None:
            return self.drop(MALFORMED, f"control message with a bad header: {reason}")
        user = str(frames[0].get("User-Id"))  # set by ZAP: the sender's Z85 public key
        if header["k"] not in (KEY, REDUCE, ABORT, DONE, HAVE, REVEAL):
            return self.drop(MALFORMED, f"{header['k']} message on the control channel")
        if self.is_future(header):
            early.append((header, user, [f.bytes for f in frames]))
            return False
        if not self.is_current(header):
            return self.drop(
                STALE,
                f"{header['k']} message for round {header['r']} attempt {header['a']}, "
                f"this node is in round {self.round_id} attempt {self.attempt}",
                logging.INFO,
            )
        return self.on_control(header, user, frames)

    def on_control(self, header: dict[str, Any], user: str, frames: Sequence[zmq.Frame]) -> bool:
        """A current-round control message from the CURVE key ``user``."""
        j = self.index_by_key.get(user)
        if j is None or j == self.me:
            return self.drop(FOREIGN, f"control message from {user}, who is not a participant")
        if header["s"] != j:
            return self.drop(
                FOREIGN, f"{self.peers[j].name} claims to be participant {header['s']}"
            )
        kind = header["k"]
        if kind in (DONE, HAVE):
            seen = self.done_from if kind == DONE else self.have_from
            if j in seen or len(frames) != 1:
                return self.drop(REPLAYED, f"{kind} message from {self.peers[j].name} replayed")
            seen.add(j)
            return True
        if kind == REVEAL:
            if j in self.reveals or len(frames) != 2 or len(frames[1]) != secagg.SEED_BYTES:
                return self.drop(
                    REPLAYED, f"reveal message from {self.peers[j].name} replayed or cut"
                )
            self.reveals[j] = frames[1].bytes
            return True
        if kind == ABORT:
            culprits = [c for c in header["c"] if isinstance(c, int) and 0 <= c < len(self.peers)]
            cls = PeerTimeout if header["timeout"] else PeerRejected
            self.abort = cls(
                f"Round {self.round_id} attempt {self.attempt} was abandoned by "
                f"{self.peers[j].name}: {header['why']}",
                culprits=self.names(culprits),
                round_id=self.round_id,
                attempt=self.attempt,
            )
            return True
        if kind == REDUCE:
            got = self.reduces.setdefault(header["q"], {})
            shard = header["i"]
            if shard >= len(self.peers) or j not in self.owners(shard):
                return self.drop(
                    FOREIGN, f"reduce message from {self.peers[j].name} for a shard it does not own"
                )
            if (j, shard) in got or len(frames) != 2 or len(frames[1]) != 8 * header["n"]:
                return self.drop(
                    REPLAYED, f"reduce message from {self.peers[j].name} replayed or cut"
                )
            got[j, shard] = np.frombuffer(frames[1].bytes, dtype="<f8")
            return True
        return self._on_key(j, header, frames)

    def _on_key(self, j: int, header: dict[str, Any], frames: Sequence[zmq.Frame]) -> bool:
        if j in self.recv_keys:
            return self.drop(REPLAYED, f"key message from {self.peers[j].name} replayed")
        theirs = (header["n"], header["dt"], header["st"], header["enc"])
        ours = (self.out.size, self.dtype.str, self.agreement, self.encrypted)
        if theirs != ours:
            self.abort = self.reject(
                j,
                f"it has {header['n']} {np.dtype(header['dt']).name} parameters, merge "
                f"{header['st']}, encryption {header['enc']}; this node has {self.out.size} "
                f"{self.dtype.name}, merge {self.agreement}, encryption {self.encrypted}. All "
                "participants must train the same model with the same settings.",
            )
            return True
        parts = [crypto.KEY_BYTES] * self.encrypted + [secagg.SEED_BYTES] * self.secure
        if (
            len(frames) != 1 + len(parts) + int(header["cred"])
            or [len(f) for f in frames[1 : 1 + len(parts)]] != parts
        ):
            return self.drop(MALFORMED, f"key message from {self.peers[j].name} is malformed")
        weight = header["w"]
        if not (math.isfinite(weight) and weight > 0):
            self.abort = self.reject(j, f"its merge weight {weight!r} is not a positive number")
            return True
        if not _TCP_ENDPOINT.fullmatch(header["data"]):
            self.abort = self.reject(
                j, f"its data endpoint {header['data'][:80]!r} is not tcp://host:port"
            )
            return True
        if self.verify_peer is not None:
            refusal = self._check_identity(j, frames[-1].bytes if header["cred"] else None)
            if refusal is not None:
                self.abort = refusal
                return True
        self.recv_keys[j] = frames[1].bytes if self.encrypted else None
        if self.secure:
            self.mask_parts_recv[j] = frames[1 + int(self.encrypted)].bytes
        self.weights[j] = float(weight)
        self.data_endpoints[j] = header["data"]
        for pending in self.pending.pop(j, []):
            self._accept_shard(*pending)
        return True

    def _check_identity(self, j: int, creds: bytes | None) -> PeerRejected | None:
        """Run ``verify_peer``; a refusal fails the round naming the participant."""
        assert self.verify_peer is not None
        peer = self.peers[j]
        try:
            if creds is None:
                raise IdentityError(f"{peer.name} sent no identity credentials")
            self.verify_peer(peer, creds)
        except Exception as e:  # a peer's bytes must not end this node: any failure refuses
            if not isinstance(e, SwarmError):
                logger.debug("verify_peer raised %r on %s's credentials", e, peer.name)
            claimed = getattr(e, "claimed", None) or "no identity"
            logger.warning(
                "%s refused %s (claims %s, CURVE key %s): %s",
                self.name,
                peer.name,
                claimed,
                peer.public_key.decode(),
                e,
            )
            refusal = self.reject(j, f"its identity was not accepted: {e}")
            refusal.__cause__ = e
            return refusal
        return None

    # ---------------------------------------------------------- data messages

    def on_data_frames(self, frames: Sequence[zmq.Frame]) -> bool:
        """A message from the data socket: a header and a sealed shard."""
        if len(frames) != 2:
            return self.drop(MALFORMED, f"data message with {len(frames)} frames, expected 2")
        raw = frames[0].bytes
        header, reason = parse_header(raw)
        if header is None:
            return self.drop(MALFORMED, f"data message with a bad header: {reason}")
        return self.on_data(header, raw, frames[1])

    def on_data(self, header: dict[str, Any], raw: bytes, payload: zmq.Frame) -> bool:
        """A sealed shard (``contrib`` or ``merged``) with its parsed header."""
        kind, j = header["k"], header["s"]
        if kind not in (CONTRIB, MERGED):
            return self.drop(MALFORMED, f"{kind} message on the data channel")
        if not self.is_current(header):
            return self.drop(
                STALE,
                f"{kind} shard for round {header['r']} attempt {header['a']}, this node is in "
                f"round {self.round_id} attempt {self.attempt}",
            )
        if not (0 <= j < len(self.peers)) or j == self.me or header["t"] != self.me:
            return self.drop(FOREIGN, f"{kind} shard from unknown sender {j} or for another node")
        shard = header["i"]
        if shard >= len(self.peers) or (
            shard not in self.owned if kind == CONTRIB else j not in self.owners(shard)
        ):
            mine = (
                "a shard this node does not own" if kind == CONTRIB else "a shard it does not own"
            )
            return self.drop(MALFORMED, f"{kind} shard {shard} from {self.peers[j].name}: {mine}")
        a, b = self.bounds[shard]
        dtype = self.contrib_dtype if kind == CONTRIB else self.dtype
        if header["dt"] != dtype.str or header["n"] != b - a:
            return self.drop(
                MALFORMED,
                f"{kind} shard {shard} from {self.peers[j].name} has dtype {header['dt']}, "
                f"length {header['n']}; expected {dtype.str}, {b - a}",
            )
        if self.encrypted and not header["nonce"]:
            return self.drop(MALFORMED, f"{kind} shard from {self.peers[j].name} has no nonce")
        expected = payload_nbytes(header) + (crypto.TAG_BYTES if self.encrypted else 0)
        if len(payload) != expected:
            return self.drop(
                MALFORMED,
                f"{kind} shard from {self.peers[j].name} has {len(payload)} bytes, "
                f"expected {expected} (truncated or padded)",
            )
        if (j, shard) in (self.contribs if kind == CONTRIB else self.merged_from):
            return self.drop(REPLAYED, f"{kind} shard from {self.peers[j].name} replayed")
        if self.encrypted and j not in self.recv_keys:
            queue = self.pending.setdefault(j, [])
            if len(queue) >= PENDING_LIMIT:
                return self.drop(FLOOD, f"too many shards from {self.peers[j].name} before its key")
            queue.append((header, raw, payload))
            return False
        return self._accept_shard(header, raw, payload)

    def _accept_shard(self, header: dict[str, Any], raw: bytes, payload: zmq.Frame) -> bool:
        kind, j, shard = header["k"], header["s"], header["i"]
        a, b = self.bounds[shard]
        if kind == CONTRIB:
            target = self.buffer(b - a, self.contrib_dtype)
        else:  # one owner: straight into place; several: a copy until they are compared
            target = self.out[a:b] if self.replicas == 1 else np.empty(b - a, self.dtype)
        if self.encrypted:
            key = self.recv_keys[j]
            assert key is not None
            nonce = bytes.fromhex(header["nonce"])
            if not crypto.open_into(key, nonce, raw, payload.buffer, target.data.cast("B")):
                if kind == MERGED:  # the failed decryption may have scribbled on our slot
                    target[:] = 0
                return self.drop(
                    TAMPERED,
                    f"{kind} shard claiming to be from {self.peers[j].name} failed "
                    "authentication (tampered, or sealed by someone else)",
                )
        elif kind == CONTRIB:
            target = np.frombuffer(payload.buffer, dtype=self.contrib_dtype)
        else:
            target[:] = np.frombuffer(payload.buffer, dtype=self.dtype)
        self.stats.bytes_received += len(raw) + len(payload)
        if kind == CONTRIB:
            self.contribs[j, shard] = (target, float(header["w"]))
            return True
        if self.replicas == 1 and not np.isfinite(target).all():
            # an owner's merge of finite updates is finite; with replicas, the other
            # owners' copies outvote it (see :meth:`judge`)
            target[:] = 0
            self.abort = self.reject(j, f"the merged shard {shard} it owns holds NaN or Inf")
            return True
        self.merged_from.add((j, shard))
        if self.replicas > 1:
            self.copies.setdefault(shard, {})[j] = target
        self.settle(shard)
        return True


def sent_to(st: RoundState, key: tuple[str, bytes]) -> list[list[bytes]]:
    """The round's control messages to the peer at (endpoint, public key) ``key``."""
    return [
        frames
        for j, p in enumerate(st.peers)
        if (p.endpoint, p.public_key) == key
        for frames in st.sent_ctl.get(j, [])
    ]


def drop_unexpected(
    st: RoundState,
    frames: Sequence[zmq.Frame],
    control: bool,
    error: Exception,
    blamed: set[tuple[str, str]],
) -> None:
    """A message that made a check raise: dropped and counted; its sender logged once.

    ``blamed`` holds the (sender, channel) pairs already warned about.
    """
    try:
        sender = str(frames[0].get("User-Id")) if control else "an unauthenticated sender"
    except zmq.ZMQError:
        sender = "an unknown sender"
    kind = "control" if control else "data"
    level = logging.DEBUG if (sender, kind) in blamed else logging.WARNING
    blamed.add((sender, kind))
    st.drop(MALFORMED, f"{kind} message from {sender} raised {error!r}", level)
