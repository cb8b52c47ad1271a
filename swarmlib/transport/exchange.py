"""One sync round among peers, with no leader: reduce-scatter, merge at each owner, all-gather.

The flattened parameter vector is cut into as many shards as there are
participants; participant *i* owns shard *i*. In a round each node

1. sends every other participant a ``key`` message on the CURVE control channel
   (a fresh AES-256 key for the shards it will send that peer, its data endpoint
   and its model facts), and waits for theirs;
2. sends shard *j* of its vector, sealed, to owner *j* (``contrib``), and
   receives the others' slices of its own shard;
3. merges its shard with the ``merge`` it was given (a
   :class:`~swarmlib.transport.round.ShardMerge`; a merge that needs
   whole-vector scalars yields partials, which the owners sum over ``reduce``
   messages);
4. sends its merged shard, sealed, to every participant (``merged``) and
   receives theirs.

With secure aggregation (``run_round(..., secure=True)``, linear merges only)
step 2 sends each owner a masked, fixed-point slice (:mod:`~swarmlib.transport.secagg`),
and between steps 2 and 3 every owner that holds all its slices says so
(``have``); once a node has heard ``have`` from *every* owner it reveals its
self-mask key for each owner's shard (``reveal``), and each owner unmasks only
the sum. Until then no owner can learn any sum, so a failure in the key or
scatter phase is retried safely without the culprit. A failure after this node
revealed raises :class:`~swarmlib.errors.RoundForfeited` instead: a retry would
hand an owner a second sum over other participants, and the difference of two
sums is a participant's values.

Each node moves ``2(N-1)/N`` of the model and ends with the same bytes. A
message that is foreign, for another round, replayed, truncated, tampered with
or of the wrong shape is dropped and logged. A participant that sends nothing
expected for ``timeout`` seconds fails the round with :class:`PeerTimeout`
naming it, on every node; the caller retries as the next attempt without it.

The round's state and message checks are in :mod:`swarmlib.transport.round`,
the sockets in :mod:`swarmlib.transport.sockets`; this module holds the phases.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import zmq

from swarmlib.errors import (
    ConfigurationError,
    MergeError,
    PeerTimeout,
    RoundFailed,
    RoundForfeited,
)
from swarmlib.transport import secagg
from swarmlib.transport.auth import CurveKeyPair
from swarmlib.transport.framing import (
    CONTRIB,
    DONE,
    HAVE,
    KEY,
    MERGED,
    REDUCE,
    REVEAL,
)
from swarmlib.transport.replicas import check_replicas
from swarmlib.transport.round import (
    Peer,
    RoundResult,
    RoundState,
    RoundStats,
    ShardMerge,
    check_round,
    check_vectors,
    drop_unexpected,
    sent_to,
    shard_bounds,
)
from swarmlib.transport.sockets import ExchangeSockets

__all__ = ["Peer", "RoundResult", "RoundStats", "ShardMerge", "ShardedExchange", "shard_bounds"]

logger = logging.getLogger(__name__)

_EARLY_LIMIT = 1024  # control messages kept for rounds this node has not started yet


class ShardedExchange:
    """This node's end of the sharded peer-to-peer exchange.

    It binds two sockets once: a CURVE control socket (``endpoint``, which peers
    know together with this node's public key) that admits only the current
    round's participants, and a data socket for sealed shards, whose address
    peers learn over the control channel.

    Args:
        keypair: This node's CURVE key pair. Defaults to a fresh one.
        bind: Control endpoint to bind, ``tcp://host:port``; port ``0`` picks a
            free port. Defaults to ``"tcp://127.0.0.1:0"``.
        data_bind: Data endpoint to bind. Defaults to the control host, any port.
        advertise_host: Host name peers should use for the data endpoint when
            binding a wildcard address. Defaults to the bound host.
        plaintext: Send shards unencrypted and unauthenticated. **For
            benchmarking only**: anyone on the network can read and forge
            shards. The control channel stays CURVE. Defaults to ``False``.
        timeout: Seconds a round waits without receiving any expected message
            before failing with :class:`PeerTimeout`. Defaults to 60.
        linger_ms: How long ``close()`` waits to deliver queued messages.
            Defaults to 2000.
        name: Name of this node in logs. Defaults to the control endpoint.
        credentials: Returns this node's identity credentials, sent to every
            participant in each round's ``key`` message (called every round, so
            a rotated identity is used from the next round). Defaults to none.
        verify_peer: Checks a participant's credentials before any of its
            shards is accepted; raises a :class:`~swarmlib.errors.SwarmError`
            to refuse it (the round then fails with :class:`PeerRejected`
            naming it). Defaults to no check.
        is_member: Whether a Z85 CURVE public key belongs to a member of the
            swarm. Only tells how a refused handshake is logged: a member's (a
            peer already in a round this node has not started) at debug level,
            a stranger's as a warning, once per key. Defaults to treating
            every key never admitted as a stranger's.

    Example:
        >>> with ShardedExchange() as ex:                    # doctest: +SKIP
        ...     me = Peer("node-a", ex.endpoint, ex.public_key)
        ...     result = ex.run_round([me, other], weights, round_id=0,
        ...                           merge=Mean().sharded())
    """

    def __init__(
        self,
        keypair: CurveKeyPair | None = None,
        *,
        bind: str = "tcp://127.0.0.1:0",
        data_bind: str | None = None,
        advertise_host: str | None = None,
        plaintext: bool = False,
        timeout: float = 60.0,
        linger_ms: int = 2000,
        name: str | None = None,
        credentials: Callable[[], bytes] | None = None,
        verify_peer: Callable[[Peer, bytes], None] | None = None,
        is_member: Callable[[bytes], bool] | None = None,
    ):
        if not timeout > 0:
            raise ConfigurationError(
                f"Invalid value for argument `timeout`. Received: timeout={timeout!r}. "
                "Expected a positive number of seconds."
            )
        self.keypair = keypair or CurveKeyPair.generate()
        self.plaintext = plaintext
        self.timeout = float(timeout)
        self.credentials = credentials
        self.verify_peer = verify_peer
        if plaintext:
            logger.warning(
                "Plaintext mode: shards are sent unencrypted and unauthenticated. "
                "Use it for benchmarks only."
            )
        self._sockets = ExchangeSockets(
            self.keypair,
            bind=bind,
            data_bind=data_bind,
            advertise_host=advertise_host,
            linger_ms=int(linger_ms),
            is_member=is_member,
        )
        self.endpoint: str = self._sockets.endpoint
        self.data_endpoint: str = self._sockets.data_endpoint
        self.name = name or self.endpoint
        self._early: deque[tuple[dict[str, Any], str, list[bytes]]] = deque(maxlen=_EARLY_LIMIT)
        self._last_round: tuple[int, int] | None = None
        self._blamed: set[tuple[str, str]] = set()  # (sender, channel) already warned about
        self._hasher: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def public_key(self) -> bytes:
        """This node's Z85 CURVE public key."""
        return self.keypair.public

    def wait_for_traffic(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a peer's message, without reading it.

        Returns True as soon as one is waiting. A node that waits for its round to
        close on chain sleeps here, so that it looks at the chain again the moment
        a peer has begun the round instead of at its next poll.
        """
        return self._sockets.wait_for_traffic(seconds)

    def close(self) -> None:
        """Close every socket and the context (waits up to ``linger_ms`` for queued sends)."""
        self._sockets.close()
        if self._hasher is not None:
            self._hasher.shutdown()
            self._hasher = None

    def __enter__(self) -> ShardedExchange:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------- round

    def run_round(
        self,
        participants: Sequence[Peer],
        vector: np.ndarray,
        *,
        round_id: int,
        merge: ShardMerge,
        attempt: int = 0,
        weight: float = 1.0,
        out: np.ndarray | None = None,
        secure: bool = False,
        replicas: int = 1,
        hash_contribution: bool = True,
    ) -> RoundResult:
        """Exchange and merge ``vector`` with the participants.

        Args:
            participants: Every participant, this node included, in the agreed
                order (the same list on every node).
            vector: This node's flattened parameters (1-D, floating point).
            round_id: The round agreed for this sync.
            merge: How each owner merges its shard, e.g.
                ``swarmlib.merge.Mean().sharded(layout)``. Every participant
                must use one of the same ``spec``.
            attempt: The attempt of this round (0 first; +1 on each retry).
            weight: This node's merge weight (e.g. its number of training
                samples). Defaults to 1.
            out: Where to write the merged vector: a contiguous array of the
                vector's shape and dtype, not sharing memory with it. Reusing one
                array round after round saves an allocation. Defaults to a new array.
            secure: Secure aggregation: each owner learns only the weighted sum
                of its shard, never one participant's values. Needs a linear
                ``merge`` (the mean) and at least 3 participants; every
                participant must pass the same. Defaults to ``False``.
            replicas: How many participants merge each shard
                (:mod:`swarmlib.transport.replicas`): 3 outvotes one wrong owner
                per shard, 2 detects one, 1 (the default) trusts the single
                owner. Every participant must pass the same; not with ``secure``.
            hash_contribution: Hash ``vector`` beside the round, for
                ``RoundResult.contribution`` (a node's round receipt). Defaults
                to ``True``; ``False`` leaves it empty and saves the pass.

        Returns:
            The merged vector, byte-identical on every participant, with its
            SHA-256 and this node's stats.

        Raises:
            PeerTimeout: a participant sent nothing expected within the timeout.
            PeerRejected: a participant's contribution was refused (other model
                size or dtype, NaN/Inf, bad weight), the replicated owners of a
                shard sent copies of which none has a majority (with
                ``replicas`` > 1; a copy that has one is taken, and an owner it
                outvoted is named in :attr:`RoundResult.outvoted`), or a
                participant abandoned the round because of another.
            RoundForfeited: with ``secure``, the round failed after this node
                revealed its masks; do not retry it (see the module docstring).
            ConfigurationError: bad arguments (this node not in the list,
                duplicated peers, a vector that is not a 1-D float array).
        """
        if self._sockets.closed:
            raise ConfigurationError("This exchange is closed; create a new one.")
        if secure:
            _check_secure(merge, len(participants))
        check_replicas(replicas, len(participants), secure)
        started = time.perf_counter()
        agreement = merge.spec + ("+secure_aggregation" if secure else "")
        agreement += f"+replicas={replicas}" if replicas > 1 else ""
        st, own = self._begin(
            participants, vector, round_id, attempt, weight, agreement, out, secure, replicas
        )
        # hashed beside the round (hashlib lets go of the GIL): the receipt of what was sent
        contribution = self._hashing().submit(_sha256, own) if hash_contribution else None
        try:
            self._phases(st, own, merge, started)
        except RoundFailed as e:
            if st.abort is not e:
                self._broadcast_abort(st, e)
            if st.revealed:
                raise _forfeited(e) from e
            raise
        except BaseException as e:
            self._broadcast_abort(st, e)
            raise
        finally:
            if st.encrypted:  # decrypted contributions are ours; nothing refers to them now
                self._sockets.pool.spare_recv = [buf for buf, _ in st.contribs.values()]
        st.hash_ready_shards()
        digest = st.hasher.hexdigest()
        st.stats.total_s = time.perf_counter() - started
        logger.info("%s: round %d attempt %d merged among %d participants in %.3fs (%.1f MB "
                    "sent, %d dropped), sha256 %s", self.name, round_id, attempt, len(st.peers),
                    st.stats.total_s, st.stats.bytes_sent / 1e6, st.stats.dropped,
                    digest[:12])  # fmt: skip
        return RoundResult(st.out, digest, st.stats, contribution.result() if contribution else "",
                           st.outvoted_names())  # fmt: skip

    def _hashing(self) -> ThreadPoolExecutor:
        if self._hasher is None:
            self._hasher = ThreadPoolExecutor(1, thread_name_prefix="swarmlib-hash")
        return self._hasher

    def _phases(self, st: RoundState, own: np.ndarray, merge: ShardMerge, started: float) -> None:
        """Keys, reduce-scatter, merge, all-gather, confirm; each phase timed in ``st.stats``."""
        self._send_keys(st)
        self._pump(st, KEY)
        t1 = time.perf_counter()
        st.stats.keys_s = t1 - started
        for k, j in st.sends():
            try:
                frames = st.contrib_frames(j, k, own, self._sockets.pool.seal)
            except ConfigurationError as e:  # this node's own weights cannot be encoded
                raise st.reject(st.me, str(e)) from e
            self._send_data(st, j, frames)
        self._pump(st, CONTRIB)
        t2 = time.perf_counter()
        st.stats.scatter_s = t2 - t1
        if st.secure:
            a, b = st.bounds[st.me]
            st.out[a:b] = self._unmask_own_shard(st, own)
        else:
            self._merge_owned(st, own, st.weight, merge)
        t3 = time.perf_counter()
        st.stats.merge_s = t3 - t2
        for k in st.owned:
            for j in st.others:
                self._send_data(st, j, st.merged_frames(j, k, self._sockets.pool.seal))
        for k in st.owned:
            st.mark_merged(k)
        self._pump(st, MERGED)
        if st.disputes:
            raise st.disputed("merged shard")
        st.stats.gather_s = time.perf_counter() - t3
        self._confirm(st)

    # ------------------------------------------------------------ round set-up

    def _begin(
        self,
        participants: Sequence[Peer],
        vector: np.ndarray,
        round_id: int,
        attempt: int,
        weight: float,
        agreement: str,
        out: np.ndarray | None,
        secure: bool = False,
        replicas: int = 1,
    ) -> tuple[RoundState, np.ndarray]:
        """Check the arguments and set up the round; returns its state and the own vector."""
        peers = list(participants)
        me = check_round(peers, self.public_key, round_id, attempt, weight, self._last_round)
        own, out = check_vectors(vector, out)
        keys = [p.public_key for p in peers]
        self._last_round = (round_id, attempt)
        st = RoundState(
            weight=float(weight),
            secure=secure,
            replicas=replicas,
            round_id=round_id,
            attempt=attempt,
            peers=peers,
            me=me,
            dtype=out.dtype,
            bounds=shard_bounds(out.size, len(peers)),
            agreement=agreement,
            encrypted=not self.plaintext,
            out=out,
            stats=RoundStats(round_id, attempt, tuple(p.name for p in peers)),
            name=self.name,
            verify_peer=self.verify_peer,
            buffer=self._sockets.pool.recv,
            index_by_key={p.public_key.decode(): i for i, p in enumerate(peers)},
        )
        self._sockets.admit_only(k for k in keys if k != self.public_key)
        self._sockets.keep_only({(p.endpoint, p.public_key) for p in peers})
        early, self._early = list(self._early), deque(maxlen=_EARLY_LIMIT)
        for header, user, frames in early:
            if st.is_future(header):
                self._early.append((header, user, frames))
            elif st.is_current(header):
                st.on_control(header, user, [zmq.Frame(f) for f in frames])
        return st, own

    # ---------------------------------------------------------------- sending

    def _send_ctl(self, st: RoundState, j: int, frames: list[bytes]) -> None:
        st.sent_ctl.setdefault(j, []).append(frames)
        self._sockets.send_control((st.peers[j].endpoint, st.peers[j].public_key), frames)

    def _resend_refused(self, st: RoundState) -> None:
        """Reconnect to peers that refused our handshake, and send this round's messages again.

        A peer refuses us when it has not started the round that admits us yet.
        """
        for key in self._sockets.due_retries():
            self._sockets.resend(key, sent_to(st, key))

    def _send_keys(self, st: RoundState) -> None:
        creds = self.credentials() if self.credentials is not None else None
        for j in st.others:
            self._send_ctl(st, j, st.key_frames(j, self.data_endpoint, creds))

    def _send_data(self, st: RoundState, j: int, frames: list[Any]) -> None:
        """Send a sealed shard to ``j``; its buffer is reused once ZeroMQ has sent it."""
        sock = self._sockets.data(st.data_endpoints[j])
        try:
            tracker = sock.send_multipart(frames, copy=False, track=True, flags=zmq.NOBLOCK)
        except zmq.Again as e:
            raise PeerTimeout(
                f"{st.peers[j].name} does not accept messages (its queue is full): it is "
                "probably not running. Retry the round without it.",
                culprits=[st.peers[j].name],
                round_id=st.round_id,
                attempt=st.attempt,
            ) from e
        if st.encrypted and tracker is not None:
            self._sockets.pool.sent(frames[1], tracker, keep=4 * len(st.peers))
        st.stats.bytes_sent += len(frames[0]) + len(frames[1])

    def _confirm(self, st: RoundState) -> None:
        """Tell every participant this node holds the merged vector; wait until all say so.

        Without this last step a node could return (and crash, or exit) while its
        merged shard is still queued for a slower peer, which would then fail a
        round the others completed. With it, a round ends the same way on every
        node: if a peer fails the attempt and says so, this node fails it too and
        all retry together. A peer that dies after it sent everything only makes
        this wait end early (its connection drops) or time out, which is not an
        error: every value is here.
        """
        for j in st.others:
            self._send_ctl(st, j, [st.header(DONE, j)])
        gone = self._sockets.gone

        def settled() -> bool:  # confirmed, or its process is gone (connection dropped)
            return all(
                j in st.done_from or (st.peers[j].endpoint, st.peers[j].public_key) in gone
                for j in st.others
            )

        try:
            self._pump(st, DONE, settled)
        except PeerTimeout as e:
            logger.warning(
                "%s: round %d attempt %d complete here, but %s did not confirm it: %s",
                self.name,
                st.round_id,
                st.attempt,
                ", ".join(e.culprits),
                "it may have stopped after sending its shards",
            )

    def _broadcast_abort(self, st: RoundState, err: BaseException) -> None:
        header = st.abort_header(err)
        for j in st.others:
            peer = st.peers[j]
            try:
                self._sockets.control(peer.endpoint, peer.public_key).send(
                    header, flags=zmq.NOBLOCK
                )
            except zmq.ZMQError:
                logger.debug("Could not tell %s about the abort", peer.name)

    # -------------------------------------------------------------- receiving

    def _pump(self, st: RoundState, phase: str, done: Callable[[], bool] | None = None) -> None:
        """Receive until ``done()`` (default: nobody is missing in ``phase``).

        Fails after ``timeout`` s without progress, naming who is missing.
        """
        finished = done or (lambda: not st.missing(phase))
        last_progress = time.monotonic()
        while True:
            if st.abort is not None:
                raise st.abort
            if finished():
                return
            remaining = last_progress + self.timeout - time.monotonic()
            if remaining <= 0:
                self._grace(st, finished)
                if st.abort is not None:
                    raise st.abort
                if finished():
                    return
                raise st.timeout_error(phase, self.timeout)
            if self._poll_once(st, remaining):
                last_progress = time.monotonic()

    def _poll_once(self, st: RoundState, wait_s: float) -> bool:
        progressed = False
        self._resend_refused(st)
        for sock, frames in self._sockets.poll(wait_s):
            control = sock is self._sockets.ctl_in
            try:
                if control:
                    progressed |= st.on_control_frames(frames, self._early)
                else:
                    progressed |= st.on_data_frames(frames)
            except Exception as e:  # no frame from anyone ends the round: drop it and go on
                drop_unexpected(st, frames, control, e, self._blamed)
        return progressed

    def _grace(self, st: RoundState, done: Callable[[], bool]) -> None:
        """Before blaming peers for a timeout, give their own aborts a moment to arrive."""
        end = time.monotonic() + min(1.0, self.timeout / 4)
        while st.abort is None and not done() and time.monotonic() < end:
            self._poll_once(st, end - time.monotonic())

    # ------------------------------------------------------------------ merging

    def _unmask_own_shard(self, st: RoundState, own: np.ndarray) -> np.ndarray:
        """Secure aggregation: ``have`` to all, reveal once every owner has all, then the sum."""
        for j in st.others:
            self._send_ctl(st, j, [st.header(HAVE, j)])
        self._pump(st, HAVE)
        st.revealed = True  # from here on, an owner may learn this attempt's sum
        for j in st.others:
            self._send_ctl(st, j, [st.header(REVEAL, j), st.self_keys[j]])
        self._pump(st, REVEAL)
        return st.secure_sum(own)

    def _merge_owned(
        self, st: RoundState, own: np.ndarray, weight: float, merge: ShardMerge
    ) -> None:
        """Merge every shard this node owns into ``st.out``, the shards' merges in step.

        A merge that needs whole-vector scalars yields partials; each is summed
        over all shards (:meth:`_reduce`) and the total sent back to every shard's merge.
        """
        steps = {}
        for k in st.owned:
            order, shards, weights = st.shards_to_merge(own, weight, k)
            steps[k] = (order, merge(shards, weights, st.names(order), st.bounds[k][0]))
        totals: dict[int, np.ndarray | None] = dict.fromkeys(steps)
        while steps:
            partials = {}
            for k, (order, gen) in list(steps.items()):
                try:
                    total = totals[k]
                    partials[k] = next(gen) if total is None else gen.send(total)
                except StopIteration as finished:
                    a, b = st.bounds[k]
                    st.out[a:b] = finished.value
                    del steps[k]
                except MergeError as e:
                    if e.peer is None:
                        raise
                    raise st.reject(order[st.names(order).index(e.peer)], str(e)) from e
            if partials and len(partials) != len(st.owned):
                raise MergeError(
                    f"Merge {merge.spec} took a different number of steps on "
                    "the shards of one node; a merge must step alike on every shard."
                )
            if partials:
                total = self._reduce(st, partials)
                totals = dict.fromkeys(partials, total)

    def _reduce(self, st: RoundState, partials: dict[int, np.ndarray]) -> np.ndarray:
        """Sum one partial per shard, in shard order (identical everywhere).

        Each owner sends its partial of every shard it owns; of a shard's
        copies a node takes the one more than half of its owners agree on.
        """
        q = st.next_reduce
        st.next_reduce += 1
        got = st.reduces.setdefault(q, {})
        for k, partial in partials.items():
            partial = np.ascontiguousarray(partial, dtype="<f8")
            got[st.me, k] = partial
            header = st.header(REDUCE, 0, q=q, n=partial.size, i=k)
            for j in st.others:
                self._send_ctl(st, j, [header, partial.tobytes()])
        self._pump(st, REDUCE)
        size = next(iter(partials.values())).size
        total = np.zeros(size)
        for k in range(len(st.peers)):
            copies = {o: got[o, k] for o in st.owners(k)}
            for o, value in copies.items():  # with replicas, the other owners outvote it
                if st.replicas == 1 and (value.size != size or not np.isfinite(value).all()):
                    raise st.reject(o, "it sent a malformed or non-finite reduce message")
            vote = st.judge(k, copies)
            if vote.winner is not None:
                if copies[vote.winner].size != size:  # a majority of owners colluded
                    raise st.reject_many(sorted(copies), "malformed reduce messages")
                total += copies[vote.winner]
        if st.disputes:
            raise st.disputed("reduce partial of shard")
        return total


def _sha256(vector: np.ndarray) -> str:
    return hashlib.sha256(vector.data.cast("B")).hexdigest()


def _forfeited(e: RoundFailed) -> RoundForfeited:
    """The error of a round that failed after this node revealed its masks: not to be retried."""
    return RoundForfeited(
        f"{e} This node had revealed its secure-aggregation masks, so an owner may hold this "
        "attempt's sum: a retry without the failed participant would let it learn that "
        "participant's values. The round is not retried; this node keeps its own weights "
        "until the next round.",
        culprits=e.culprits,
        round_id=e.round_id,
        attempt=e.attempt,
    )


def _check_secure(merge: ShardMerge, participants: int) -> None:
    """Raise unless ``merge`` is linear and the round is large enough for secure aggregation."""
    if not getattr(merge, "linear", False):
        raise ConfigurationError(
            f"Secure aggregation sums the participants' values without seeing them, so it "
            f"merges only by the (weighted) mean; merge {merge.spec!r} needs each "
            "participant's values. Use merge='mean', or turn secure aggregation off."
        )
    secagg.check_count(participants)
