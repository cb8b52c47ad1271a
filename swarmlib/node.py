"""SwarmNode: the middleware that turns "merge my weights with the swarm" into votes and a merge.

Usable without Keras for any list of numpy arrays::

    node = SwarmNode.from_env()          # SWARMLIB_* variables, see NodeConfig
    node.join()
    weights = node.sync(weights, n_samples=len(x_train))   # every node gets the same merge
    node.leave()

One :meth:`SwarmNode.sync` is one round: vote ``ready`` on chain (with the hash
of the model loaded last round), wait until the round's participant list is
agreed, verify every participant's SPIFFE identity and merge over the sharded
exchange. A participant that fails the exchange is dropped and the round is
voted again as the next attempt. The merged model's hash is recorded with the
next vote, so ``swarmlib audit`` can show that every participant loaded it.
A node that comes late fetches the swarm's latest merged model from a
participant and checks it against the hash on chain (:meth:`SwarmNode.sync`).

The vote needs nothing of the weights, so a caller that knows a sync is coming
can cast it early with :meth:`SwarmNode.vote_ahead` (the Keras callback does, a
few batches before each sync): the round is then agreed while those batches
train, and ``sync`` goes straight to the exchange.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from zmq.utils import z85

from swarmlib.errors import (
    ConfigurationError,
    FetchFailed,
    IdentityError,
    NotAMember,
    PeerRejected,
    QuorumTimeout,
    RoundClosed,
    RoundFailed,
    SwarmError,
)
from swarmlib.identity import (
    Binding,
    Credentials,
    Expected,
    IdentitySource,
    make_credentials,
    open_source,
    svid_hash,
    verify_credentials,
)
from swarmlib.ledger import LedgerClient, MemberInfo, connect
from swarmlib.ledger.chain import with_retries
from swarmlib.ledger.client import RoundInfo
from swarmlib.ledger.keys import load_or_create_account
from swarmlib.params import flatten, unflatten
from swarmlib.transport import CurveKeyPair, Peer, RoundStats, ShardedExchange
from swarmlib.transport.fetch import ModelServer, fetch_model

__all__ = ["ENV", "NodeConfig", "SwarmNode"]

logger = logging.getLogger(__name__)

#: Environment variable of each NodeConfig field (set by `swarmlib run` or a deployment).
ENV = {
    "rpc": "SWARMLIB_RPC",
    "contract": "SWARMLIB_CONTRACT",
    "session": "SWARMLIB_SESSION",
    "key_file": "SWARMLIB_KEY_FILE",
    "key_passphrase": "SWARMLIB_KEY_PASSPHRASE",
    "curve_dir": "SWARMLIB_CURVE_DIR",
    "bind": "SWARMLIB_BIND",
    "advertise_host": "SWARMLIB_ADVERTISE_HOST",
    "svid_cert": "SWARMLIB_SVID_CERT",
    "svid_key": "SWARMLIB_SVID_KEY",
    "trust_bundle": "SWARMLIB_TRUST_BUNDLE",
    "spiffe_socket": "SPIFFE_ENDPOINT_SOCKET",
    "chain_id": "SWARMLIB_CHAIN_ID",
    "timeout": "SWARMLIB_TIMEOUT",
    "merge": "SWARMLIB_MERGE",
    "node_index": "SWARMLIB_NODE_INDEX",
    "node_count": "SWARMLIB_NODE_COUNT",
}

_REQUIRED = ("contract", "session", "key_file")

#: Attempts of one round before sync() gives up with the last attempt's error.
MAX_ATTEMPTS = 5
_MEMBER_REFRESH_S = 2.0  # least time between chain reads of the member list (model server)


@dataclass(frozen=True)
class _EarlyVote:
    """A vote cast by :meth:`SwarmNode.vote_ahead`, and the round it closed, if it did."""

    receipt: Any
    agreed: RoundInfo | None
    members: list[MemberInfo] | None  # the participants' records, when it closed the round
    seconds: float  # how long casting it took


@dataclass
class NodeConfig:
    """Where the swarm is and who this node is. Every field has a ``SWARMLIB_*`` variable (ENV)."""

    contract: str = ""
    session: str = ""
    key_file: str = ""
    rpc: str = "http://127.0.0.1:8545"
    key_passphrase: str | None = None
    curve_dir: str | None = None
    bind: str = "tcp://127.0.0.1:0"
    advertise_host: str | None = None
    svid_cert: str | None = None
    svid_key: str | None = None
    trust_bundle: str | None = None
    spiffe_socket: str | None = None
    chain_id: int | None = None
    timeout: float = 60.0
    merge: str = "mean"
    node_index: int | None = None
    node_count: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> NodeConfig:
        """Fields from ``overrides``, else from the environment, else defaults.

        Raises:
            ConfigurationError: a required setting is missing (the message names
                its variable) or a number does not parse.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, var in ENV.items():
            if overrides.get(name) is not None:
                values[name] = overrides[name]
            elif env.get(var):
                raw = env[var]
                try:
                    kind = str(types[name])
                    values[name] = (
                        int(raw) if "int" in kind else float(raw) if "float" in kind else raw
                    )
                except ValueError as e:
                    raise ConfigurationError(f"{var}={raw!r} is not a number.") from e
        config = cls(**values)
        missing = [ENV[n] for n in _REQUIRED if not getattr(config, n)]
        if missing:
            raise ConfigurationError(
                f"Missing setting(s): {', '.join(missing)}. Pass them to SwarmNode(...) or set "
                "the environment variables (`swarmlib run` sets them for local swarms)."
            )
        return config


class SwarmNode:
    """One node of a swarm: identity, chain membership, and the exchange.

    Args:
        config: The node's settings. Defaults to :meth:`NodeConfig.from_env`.
        identity: An identity source. Defaults to the SVID files or the
            Workload API named in the config.
        **overrides: NodeConfig fields (e.g. ``session="leukemia"``).
    """

    def __init__(
        self,
        config: NodeConfig | None = None,
        *,
        identity: IdentitySource | None = None,
        **overrides: Any,
    ):
        self.config = config or NodeConfig.from_env(**overrides)
        self._identity = identity
        self.round = 0
        self.last_hash = b"\0" * 32
        self._joined = False
        self._members: dict[str, MemberInfo] = {}
        self._registered_hash: bytes | None = None
        self.last_stats: RoundStats | None = None
        self.last_timing: dict[str, float] = {}
        self._flat: np.ndarray | None = None  # flatten()'s buffer, reused round after round
        self._worker: ThreadPoolExecutor | None = None  # chain writes that overlap training
        self._ahead: tuple[int, int, Future[_EarlyVote]] | None = None  # round, n_samples, vote
        self._leaving: Future[None] | None = None  # a finish() not waited for
        self._finished = False  # the chain has this node's leave, and it has not voted since

    @classmethod
    def from_env(cls, **overrides: Any) -> SwarmNode:
        """A node configured from ``SWARMLIB_*`` variables (and overrides)."""
        return cls(NodeConfig.from_env(**overrides))

    # ------------------------------------------------------------------ join

    def join(self) -> None:
        """Load keys and SVID, check membership, start the exchange and register on chain.

        Raises:
            NotAMember: this node's address is not an active member (an admin adds it).
            IdentityError: no SVID, or its SPIFFE ID is not the one bound on chain.
            ChainUnreachable, WrongChain, NoContract: the chain settings are wrong.
        """
        c = self.config
        self.identity = self._identity or open_source(
            socket_path=c.spiffe_socket, cert=c.svid_cert, key=c.svid_key, bundle=c.trust_bundle
        )
        self.account = load_or_create_account(c.key_file, c.key_passphrase)
        self.w3 = connect(c.rpc, expected_chain_id=c.chain_id)
        if c.chain_id is not None:  # connect() has just checked it
            self.chain_id = int(c.chain_id)
        else:
            self.chain_id = int(with_retries(lambda: self.w3.eth.chain_id, "eth_chainId", c.rpc))
        self.ledger = LedgerClient(self.w3, c.contract, self.account, rpc=c.rpc)
        me = self.ledger.member(self.account.address)
        if not me.active:
            raise NotAMember(
                f"This node's address {self.account.address} is not an active member of the "
                f"swarm at {self.ledger.address}. Ask an admin: swarmlib member add --address "
                f"{self.account.address} --spiffe-id {self.identity.spiffe_id}",
                error="NotAMember",
                args=(self.account.address,),
            )
        if me.spiffe_id != self.identity.spiffe_id:
            raise IdentityError(
                f"This node's SVID is {self.identity.spiffe_id}, but the chain binds "
                f"{self.account.address} to {me.spiffe_id}."
            )
        self.session = self.ledger.session(c.session)
        curve_dir = Path(c.curve_dir) if c.curve_dir else Path(c.key_file).parent
        self.curve = CurveKeyPair.load_or_create(curve_dir)
        self._start_member_cache()
        self.exchange = ShardedExchange(
            self.curve,
            bind=c.bind,
            advertise_host=c.advertise_host,
            timeout=c.timeout,
            name=self.identity.spiffe_id,
            credentials=self._credentials,
            verify_peer=self._verify_peer,
            is_member=self._is_member_key,
        )
        self._start_model_server()
        self._register()
        self._joined = True
        logger.info(
            "%s joined session %r as %s (endpoint %s)",
            self.identity.spiffe_id,
            c.session,
            self.account.address,
            self.exchange.endpoint,
        )

    def _start_member_cache(self) -> None:
        """The members' CURVE keys, read from the chain when an unknown key knocks."""
        c = self.config
        self._member_keys: set[bytes] = set()
        self._members_read_at = -_MEMBER_REFRESH_S
        self._reader_lock = threading.Lock()
        # the admission checks run in ZeroMQ's authenticator threads: give them their own
        # connection (an in-process embedded chain has no second connection to give)
        self._reader = (
            None
            if c.rpc == "embedded"
            else LedgerClient(connect(c.rpc), self.ledger.address, None, rpc=c.rpc)
        )

    def _start_model_server(self) -> None:
        """Serve this node's recent merged models to members that join late."""
        c = self.config
        host = self.exchange.endpoint[len("tcp://") :].rpartition(":")[0]
        self.model_server = ModelServer(
            self.curve, allow=self._is_member_key, bind=f"tcp://{host}:0"
        )
        port = self.model_server.endpoint.rpartition(":")[2]
        fetch = f"tcp://{c.advertise_host or host}:{port}"
        # the registered endpoint: control endpoint, then the model-fetch endpoint
        self.advertised = f"{self.exchange.endpoint} {fetch}"

    def _is_member_key(self, key: bytes) -> bool:
        """Whether a Z85 CURVE key belongs to an active member (asks the chain on a miss).

        The chain is asked at most every few seconds, so that a stranger knocking
        again and again does not turn into a stream of chain reads.
        """
        with self._reader_lock:
            stale = time.monotonic() - self._members_read_at > _MEMBER_REFRESH_S
            if key not in self._member_keys and self._reader is not None and stale:
                self._members_read_at = time.monotonic()
                self._member_keys = {
                    bytes(z85.encode(m.curve_key))
                    for m in self._reader.members()
                    if m.active and m.registered
                }
            return key in self._member_keys

    def _register(self) -> None:
        """Publish endpoint, CURVE key and SVID hash, if the chain does not hold them already."""
        leaf_hash = svid_hash(self.identity.svid().leaf)
        me = self.ledger.member(self.account.address)
        wanted = (self.advertised, self.curve.public_raw, leaf_hash)
        if (me.endpoint, me.curve_key, me.svid_hash) != wanted or not me.registered:
            self.ledger.register(*wanted)
        self._registered_hash = leaf_hash

    # ------------------------------------------------------------- identity

    def _credentials(self) -> bytes:
        binding = Binding(
            address=self.account.address,
            curve_key=self.curve.public.decode(),
            endpoint=self.advertised,
            chain_id=self.chain_id,
            contract=self.ledger.address,
        )
        return make_credentials(self.identity.svid(), binding).encode()

    def _verify_peer(self, peer: Peer, raw: bytes) -> None:
        member = self._members[peer.name]
        expected = Expected(
            address=member.address,
            spiffe_id=member.spiffe_id,
            svid_hash=member.svid_hash,
            curve_key=peer.public_key.decode(),
            chain_id=self.chain_id,
            contract=self.ledger.address,
            endpoint=member.endpoint,
        )
        verify_credentials(Credentials.decode(raw), expected, self.identity.bundle)

    # ------------------------------------------------------------------ sync

    def _nap(self) -> Callable[[float], None]:
        """A sleep for waiting on the chain that wakes up when a peer's message arrives.

        The first participant to see a round closed sends its keys and shards at
        once, so the others look at the chain again without waiting for their next
        poll. Messages are left for the exchange to read; once one is waiting, the
        rest of this wait sleeps normally (the socket stays readable).
        """
        woken = False

        def nap(seconds: float) -> None:
            nonlocal woken
            if woken:
                time.sleep(seconds)
            else:
                woken = self.exchange.wait_for_traffic(seconds)

        return nap

    def vote_ahead(self, n_samples: int) -> None:
        """Cast this node's vote for its next round now, in the background.

        The vote — ``ready(round, n_samples, hash of the last merged model)`` —
        needs nothing of the weights about to be merged. A caller that knows a
        sync is coming (the Keras callback, a few batches before it) votes while
        those batches train: when this node is the last to
        vote, the round is agreed and its participants read by the time the
        weights are ready, and :meth:`sync` goes straight to the exchange. The
        order stays vote → agree → exchange; only the wait overlaps training.

        The next :meth:`sync` must follow with the same ``n_samples``; errors of
        the vote (the chain unreachable, a round agreed without this node) are
        raised there, as if it had voted itself. Until then the other
        participants may wait for this node's messages in the exchange, so vote
        ahead only of work that is short next to the exchange's timeout.
        Calling it again before ``sync`` does nothing.

        Raises:
            ConfigurationError: ``join()`` was not called, or ``n_samples`` is not positive.
        """
        if not self._joined:
            raise ConfigurationError("Call join() before vote_ahead().")
        if n_samples <= 0:
            raise ConfigurationError(f"`n_samples` must be positive; got {n_samples}.")
        if self._ahead is not None:
            return
        round_id, last_hash = self.round, self.last_hash

        def vote() -> _EarlyVote:
            started = time.perf_counter()
            # after a leave queued before it on this worker: the vote brings the node back
            self._finished = False
            self._register_if_rotated()
            receipt = self.ledger.ready(self.config.session, round_id, 0, n_samples, last_hash)
            agreed = self.ledger.agreed_by(receipt, self.config.session, round_id, 0)
            members = None if agreed is None else self.ledger.members_of(agreed.participants)
            return _EarlyVote(receipt, agreed, members, time.perf_counter() - started)

        # one worker: after a finish() still being sent, in order (one nonce after the other)
        self._ahead = (round_id, n_samples, self._background().submit(vote))

    def _background(self) -> ThreadPoolExecutor:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="swarmlib-chain")
        return self._worker

    def _settle_leaving(self) -> None:
        """Wait for a finish() still being sent, before this thread sends (nonce order)."""
        leaving, self._leaving = self._leaving, None
        if leaving is not None:
            leaving.result()  # it logs its own failure

    def _take_vote_ahead(self, n_samples: int) -> Future[_EarlyVote] | None:
        """The vote :meth:`vote_ahead` cast for this round, if any (checked against ``sync``)."""
        if self._ahead is None:
            return None
        round_id, voted, future = self._ahead
        if voted != n_samples:  # kept: a sync() with the voted n_samples still takes it
            raise ConfigurationError(
                f"vote_ahead() voted n_samples={voted} for round {round_id}, but sync() came "
                f"with n_samples={n_samples}: pass the same n_samples."
            )
        self._ahead = None
        return future

    def _settle_vote_ahead(self) -> None:
        """Wait for a vote still being cast, so that no two transactions race for a nonce."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            try:
                ahead[2].result()
            except SwarmError as e:  # the vote is abandoned: say why
                logger.warning("The vote cast ahead for round %d failed: %s", ahead[0], e)

    def _register_if_rotated(self) -> None:
        if svid_hash(self.identity.svid().leaf) != self._registered_hash:
            self._register()  # the SVID rotated: publish its hash before anyone checks it

    def sync(
        self,
        weights: Sequence[np.ndarray],
        n_samples: int,
        *,
        strategy: str | None = None,
        min_peers: int | None = None,
        copy: bool = True,
    ) -> list[np.ndarray]:
        """Merge ``weights`` with the swarm; returns the merged arrays (same shapes, dtypes).

        Args:
            weights: This node's parameters (e.g. ``model.get_weights()``).
            n_samples: This node's merge weight, usually its training-set size.
            strategy: Merge strategy for this round. Defaults to the config's.
            min_peers: Fewest participants this node accepts, on top of the
                session's ``min_peers``. Defaults to the session's.
            copy: Return arrays of their own. ``False`` returns read-only views of
                the merged model (which this node keeps serving to late joiners), for
                a caller that copies them anyway, as ``model.set_weights`` does: it
                saves a copy of the whole model per round. Defaults to ``True``.

        Returns:
            The merged arrays. A node that comes late (its round was agreed
            without it) joins the round the swarm is in now instead, so that every
            node keeps the same round numbers.

        Raises:
            QuorumTimeout: fewer than ``min_peers`` nodes could take part.
            ConfigurationError: ``join()`` was not called, or bad arguments.
        """
        if not self._joined:
            raise ConfigurationError("Call join() before sync().")
        if n_samples <= 0:
            raise ConfigurationError(f"`n_samples` must be positive; got {n_samples}.")
        vector, layout = flatten(weights, out=self._flat)
        self._flat = vector  # written again next round: the exchange reads it only in its round
        self._settle_leaving()
        self._finished = False  # after any leave still being sent: this vote brings it back
        early = self._take_vote_ahead(n_samples)
        if early is None:
            self._register_if_rotated()
        excluded: set[str] = set()
        attempt = 0
        catching_up = False
        timing = {"vote_s": 0.0, "wait_s": 0.0, "exchange_s": 0.0}
        while True:
            t0 = time.perf_counter()
            cast: _EarlyVote | None = None
            try:
                if early is not None:
                    # cast during the last batch; raises here what the vote raised
                    future, early = early, None
                    cast = future.result()
                    receipt = cast.receipt
                    timing["vote_ahead_s"] = cast.seconds
                else:
                    receipt = self.ledger.ready(
                        self.config.session, self.round, attempt, n_samples, self.last_hash
                    )
            except RoundClosed:
                # the round was agreed without this node (it came late): move to the round
                # the swarm is in now, so that this node's round numbers match everyone's
                current, still_open = self._current_round()
                target = (
                    current if still_open and current > self.round else max(current, self.round) + 1
                )
                logger.warning(
                    "Round %d was agreed before this node voted; joining round %d",
                    self.round,
                    target,
                )
                self.round, attempt, excluded, strategy = target, 0, set(), None
                catching_up = True
                continue
            t1 = time.perf_counter()
            members: Sequence[MemberInfo] | None
            if cast is not None and cast.agreed is not None:
                state, members = cast.agreed, cast.members  # this node's vote closed it
            else:
                state = self._wait_for_round(attempt, receipt)
                members = state.members or None  # read with the round, unless this vote closed it
            if catching_up:
                catching_up = False
                caught_up = self._catch_up(state, vector)
                if caught_up is not None:
                    vector, self.last_hash = caught_up
            peers = self._peers(state.participants, excluded, members)
            t2 = time.perf_counter()
            timing["vote_s"] += t1 - t0
            timing["wait_s"] += t2 - t1
            needed = max(self.session.min_peers, min_peers or 0)
            if len(peers) < needed:
                dropped = f" after dropping {', '.join(sorted(excluded))}" if excluded else ""
                raise QuorumTimeout(
                    f"Round {self.round}: {len(peers)} participant(s){dropped}; this node needs "
                    f"at least {needed} (min_peers)."
                )
            try:
                result = self.exchange.run_round(
                    peers,
                    vector,
                    round_id=self.round,
                    attempt=attempt,
                    weight=float(n_samples),
                    strategy=strategy or self.config.merge,
                    layout=layout,
                )
                timing["exchange_s"] += time.perf_counter() - t2
                break
            except RoundFailed as e:
                timing["exchange_s"] += time.perf_counter() - t2
                if self.identity.spiffe_id in e.culprits or attempt + 1 >= MAX_ATTEMPTS:
                    raise
                if isinstance(e, PeerRejected):
                    # refused for what it sent: leave it out even if it votes again
                    excluded.update(e.culprits)
                # a peer that timed out is left out by not voting again; one that does
                # vote again is alive (it was slow, or missed a message) and takes part
                logger.warning(
                    "Round %d attempt %d failed (%s); voting attempt %d%s",
                    self.round,
                    attempt,
                    e,
                    attempt + 1,
                    f" without {', '.join(e.culprits)}" if isinstance(e, PeerRejected) else "",
                )
                attempt += 1
        self.last_hash = bytes.fromhex(result.sha256)
        # the merged vector is this round's own (the caller gets copies, or read-only views):
        # held, not copied
        self.model_server.publish(result.sha256, result.vector, self.round, copy=False)
        self.last_stats = result.stats
        self.last_timing = timing
        self.round += 1
        return unflatten(result.vector, layout, copy=copy)

    def _wait_for_round(self, attempt: int, receipt: Any) -> RoundInfo:
        return self.ledger.wait_for_round(
            self.config.session,
            self.round,
            attempt,
            sleep=self._nap(),
            vote=receipt,
            # every waiting node polls the chain (a block-number read, cheap): often, so that
            # it has read the agreed round before the last voter's weights are ready; a large
            # swarm polls less often each (about 50 polls a second in all), so that one chain
            # serves it. The first participant's message wakes the rest.
            max_poll=min(2.0, max(0.05, 0.02 * self.session.min_peers)),
        )

    def _catch_up(self, state: RoundInfo, vector: np.ndarray) -> tuple[np.ndarray, bytes] | None:
        """Fetch the swarm's model of the round before ``state`` from one of its participants.

        This node voted late (it started late, or missed rounds): its own weights
        are stale. The participants of ``state`` each recorded on chain the hash of
        the merged model they loaded; the first that hands over a model with that
        hash wins, and this node takes part with it instead. Returns the model and
        its hash, or ``None`` (logged: this node's weights go in as they are).
        """
        me = self.account.address
        for address in state.participants:
            wanted = self.ledger.vote(self.config.session, state.round, state.attempt, address)
            h = wanted.previous_merged_hash
            if address == me or h == b"\0" * 32:
                continue
            member = self.ledger.member(address)
            endpoints = member.endpoint.split()
            if len(endpoints) < 2:
                continue  # a node without a model server
            try:
                key = z85.encode(member.curve_key)
                limit = min(10.0, self.config.timeout)
                model = fetch_model(endpoints[1], key, self.curve, h.hex(), timeout=limit)
            except FetchFailed as e:
                logger.warning("Could not fetch the model from %s: %s", member.spiffe_id, e)
                continue
            if model.size != vector.size or model.dtype != vector.dtype:
                logger.warning("%s has a model of another shape", member.spiffe_id)
                continue
            logger.warning(
                "Loaded the swarm's model of round %d from %s (SHA-256 %s…, as on chain)",
                state.round - 1,
                member.spiffe_id,
                h.hex()[:16],
            )
            return model, h
        logger.warning(
            "No participant of round %d could hand over the swarm's model; this node's "
            "weights are merged in as they are",
            state.round,
        )
        return None

    def _current_round(self) -> tuple[int, bool]:
        """The highest round anyone voted in this session, and whether it is still open."""
        latest = self.ledger.latest_round(self.config.session)
        if latest is None:
            return 0, True
        round_id, _, closed = latest
        return round_id, not closed

    def _peers(
        self,
        addresses: Sequence[str],
        excluded: set[str],
        members: Sequence[MemberInfo] | None = None,
    ) -> list[Peer]:
        peers = []
        for member in self.ledger.members_of(addresses) if members is None else members:
            if member.spiffe_id in excluded:
                continue
            self._members[member.spiffe_id] = member
            key = z85.encode(member.curve_key)
            peers.append(Peer(member.spiffe_id, member.endpoint.split()[0], bytes(key)))
        return peers

    # ----------------------------------------------------------------- leave

    def finish(self, *, wait: bool = True) -> None:
        """Tell the swarm this node has stopped training: rounds no longer wait for it.

        Nodes that train on (they started later, or have more data) then know at
        once when too few members are left for their ``min_peers``
        (:class:`~swarmlib.errors.SwarmEnded`) instead of waiting out the round
        timeout. The next ``sync`` brings this node back. A chain that cannot be
        reached here is logged, not raised: training is over either way. A node
        that has finished and not voted since sends nothing again.

        Args:
            wait: Wait until the chain has it. ``False`` sends it in the
                background (the Keras callback does, so that ``fit`` returns
                without waiting for a block); the next ``sync``, :meth:`leave`
                and the interpreter's exit wait for it. Defaults to ``True``.
        """
        if not self._joined:
            return
        self._settle_vote_ahead()
        self._settle_leaving()
        if self._finished:
            return

        def send() -> None:
            try:
                self.ledger.leave(self.config.session)
                self._finished = True
            except SwarmError as e:
                logger.warning("Could not tell the chain that this node finished: %s", e)

        if wait:
            send()
        else:
            self._leaving = self._background().submit(send)

    def leave(self) -> None:
        """:meth:`finish`, then close the exchange and the identity source.

        The chain membership stays: the node may join again later.
        """
        self.finish()  # after one still being sent, and waited for
        if self._worker is not None:
            self._worker.shutdown()
            self._worker = None
        if getattr(self, "exchange", None) is not None:
            self.exchange.close()
        if getattr(self, "model_server", None) is not None:
            self.model_server.close()
        if getattr(self, "identity", None) is not None and self._identity is None:
            self.identity.close()
        self._joined = False

    def __enter__(self) -> SwarmNode:
        self.join()
        return self

    def __exit__(self, *exc: object) -> None:
        self.leave()
