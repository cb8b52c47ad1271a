"""A small typed client of the SwarmLedger contract over web3 + eth-account.

Reads are ``eth_call`` views; writes are transactions signed locally with the
node's key, sent raw, awaited with a timeout and checked for ``status``. Before
a write is sent it is simulated, so a contract refusal becomes a named
:class:`~swarmlib.errors.ContractRevert` subclass (``NotAMember``,
``RoundClosed``, …) without spending gas.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_abi.abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD
from web3.types import TxReceipt

import swarmlib.errors as errors
from swarmlib._version import __version__
from swarmlib.errors import (
    ConfigurationError,
    ContractMismatch,
    ContractRevert,
    NoContract,
    SwarmWarning,
)
from swarmlib.ledger.artifact import load_artifact
from swarmlib.ledger.chain import with_retries
from swarmlib.ledger.rules import DEFAULT_MERGE, SessionRules
from swarmlib.ledger.signer import Signer
from swarmlib.ledger.waiting import RoundWaiter

__all__ = [
    "LedgerClient",
    "MemberInfo",
    "PresenceInfo",
    "RoundInfo",
    "SessionInfo",
    "VoteInfo",
    "check_spiffe_id",
    "session_id",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

ZERO32 = b"\0" * 32


@dataclass(frozen=True)
class MemberInfo:
    """A member as the contract records it."""

    address: str
    spiffe_id: str
    active: bool
    registered: bool
    endpoint: str
    curve_key: bytes
    svid_hash: bytes

    @classmethod
    def from_row(cls, address: str, row: Sequence[Any]) -> MemberInfo:
        """From the contract's ``Member`` struct as web3 decodes it."""
        spiffe, active, registered, endpoint, curve, svid = row
        return cls(address, spiffe, active, registered, endpoint, bytes(curve), bytes(svid))


@dataclass(frozen=True)
class SessionInfo:
    """A training session: its quorum and timing, and the rules its nodes agreed on.

    ``min_peers`` is 0 and ``rules`` empty until the rules are fixed (by the
    session's creator, or by the first node that joins).
    """

    session: bytes
    name: str
    min_peers: int
    quorum_wait: int
    round_timeout: int
    rules: str = ""

    @property
    def rules_fixed(self) -> bool:
        return self.min_peers > 0


@dataclass(frozen=True)
class RoundInfo:
    """One attempt of one round: when it opened, whether it closed, who voted (in order)."""

    round: int
    attempt: int
    opened_at: int
    closed: bool
    participants: tuple[str, ...]
    members: tuple[MemberInfo, ...] = ()
    """The participants' member records, in their order, when read with the round."""


@dataclass(frozen=True)
class PresenceInfo:
    """Whether a round of a session has closed, and the members its next round waits for."""

    started: bool
    members: tuple[str, ...]


@dataclass(frozen=True)
class VoteInfo:
    """One member's vote in one round attempt."""

    voted: bool
    n_samples: int
    previous_merged_hash: bytes


def session_id(name: str) -> bytes:
    """The contract's id of a session name: ``keccak256(utf-8 name)``."""
    return bytes(keccak(text=name))


def rules_hash(min_peers: int, rules: str) -> bytes:
    """What a vote names its rules by: ``keccak256(abi.encodePacked(uint32 minPeers, rules))``."""
    return bytes(keccak(min_peers.to_bytes(4, "big") + rules.encode()))


def check_spiffe_id(spiffe_id: str) -> str:
    """Light check of a SPIFFE ID before it goes on chain (the identity layer checks fully).

    Raises:
        InvalidSpiffeId: not ``spiffe://<trust-domain>/<path>`` of printable ASCII.
    """
    rest = spiffe_id[len("spiffe://") :] if spiffe_id.startswith("spiffe://") else ""
    domain, _, path = rest.partition("/")
    ok = (
        bool(domain)
        and bool(path)
        and len(spiffe_id) <= 2048
        and all(c.isascii() and c.isprintable() and not c.isspace() for c in spiffe_id)
        and "" not in path.split("/")
        and domain == domain.lower()
    )
    if not ok:
        raise errors.InvalidSpiffeId(
            f"Invalid SPIFFE ID {spiffe_id!r}: expected spiffe://<trust-domain>/<path>, "
            "e.g. spiffe://hospital-a.example/swarm/node-1 (lowercase trust domain, no empty "
            "path segments, no spaces).",
            error="InvalidSpiffeId",
            args=(spiffe_id,),
        )
    return spiffe_id


def _error_selectors(abi: list[dict[str, Any]]) -> dict[bytes, tuple[str, list[str]]]:
    out = {}
    for item in abi:
        if item["type"] == "error":
            types = [i["type"] for i in item["inputs"]]
            signature = f"{item['name']}({','.join(types)})"
            out[bytes(keccak(text=signature))[:4]] = (item["name"], types)
    return out


class LedgerClient:
    """Reads and writes of one deployed SwarmLedger, as one account.

    Args:
        w3: A connected ``Web3`` (see :func:`swarmlib.ledger.chain.connect`).
        address: The contract's address.
        account: The node's account, to sign writes. Reads work without it.
        tx_timeout: Seconds to wait for a transaction's receipt. Defaults to 60.
        rpc: How to name the chain in errors. Defaults to the provider's repr.

    Raises:
        NoContract: there is no code at ``address`` (wrong address or wrong chain).
        ContractMismatch: the code there is not this version's SwarmLedger, and
            ``account`` is given (a client that only reads logs a warning instead).
    """

    def __init__(
        self,
        w3: Web3,
        address: str,
        account: LocalAccount | None = None,
        *,
        tx_timeout: float = 60.0,
        rpc: str | None = None,
    ):
        self.w3 = w3
        self.account = account
        self.tx_timeout = tx_timeout
        self._signer: Signer | None = None
        self._sessions: dict[str, SessionInfo] = {}
        self._voting_rules: dict[str, bytes] = {}  # session -> the rules hash its votes name
        self.rpc = rpc or str(getattr(w3.provider, "endpoint_uri", "embedded"))
        try:
            self.address = to_checksum_address(address)
        except ValueError as e:
            raise ConfigurationError(f"Invalid contract address {address!r}: {e}") from e
        code = self._rpc(lambda: w3.eth.get_code(self.address), "eth_getCode")
        artifact = load_artifact()
        _check_code(bytes(code), artifact.deployed_bytecode, self.address, self.rpc, account)
        self.contract: Contract = w3.eth.contract(address=self.address, abi=artifact.abi)
        self._errors = _error_selectors(artifact.abi)

    # ------------------------------------------------------------------ deploy

    @classmethod
    def deploy(
        cls, w3: Web3, account: LocalAccount, *, tx_timeout: float = 60.0, rpc: str | None = None
    ) -> LedgerClient:
        """Deploy a new SwarmLedger with ``account`` as its first admin."""
        artifact = load_artifact()
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        selectors = _error_selectors(artifact.abi)
        url = rpc or str(getattr(w3.provider, "endpoint_uri", "embedded"))
        signer = Signer(w3, account, rpc=url, tx_timeout=tx_timeout,
                        revert=lambda e, what: _decode_revert(e, what, selectors))  # fmt: skip
        receipt = signer.send(factory.constructor(), "deploy SwarmLedger")
        address = receipt["contractAddress"]
        assert address is not None
        logger.info("Deployed SwarmLedger at %s (gas %d)", address, receipt["gasUsed"])
        return cls(w3, address, account, tx_timeout=tx_timeout, rpc=rpc)

    # ------------------------------------------------------------------- reads

    def is_admin(self, address: str) -> bool:
        """Whether ``address`` is an admin."""
        return bool(self._call(self.contract.functions.isAdmin(to_checksum_address(address))))

    def member(self, address: str) -> MemberInfo:
        """The member record of ``address`` (inactive and empty if it never was one)."""
        addr = to_checksum_address(address)
        return MemberInfo.from_row(addr, self._call(self.contract.functions.getMember(addr)))

    def members_of(self, addresses: Sequence[str]) -> list[MemberInfo]:
        """The member records of ``addresses``, in one call (inactive and empty if never one)."""
        addrs = [to_checksum_address(a) for a in addresses]
        if not addrs:
            return []
        rows = self._call(self.contract.functions.getMembers(addrs))
        return [MemberInfo.from_row(a, row) for a, row in zip(addrs, rows, strict=True)]

    def members(self) -> list[MemberInfo]:
        """Every address ever added, active or not, in the order they were added."""
        return self.members_of(self._call(self.contract.functions.memberAddresses()))

    def active_member_count(self) -> int:
        """How many members are active (added and not removed)."""
        return int(self._call(self.contract.functions.activeMemberCount()))

    def session(self, name: str) -> SessionInfo:
        """The session called ``name``.

        Raises:
            UnknownSession: there is none.
        """
        known = self._sessions.get(name)
        if known is not None:
            return known  # a session's settings never change once its rules are fixed
        sid = session_id(name)
        exists, stored, min_peers, wait, timeout, rules = self._call(
            self.contract.functions.getSession(sid)
        )
        if not exists:
            raise errors.UnknownSession(
                f"No training session {name!r} in the contract at {self.address}; an admin "
                "creates it with create_session().",
                error="UnknownSession",
                args=(sid,),
            )
        info = SessionInfo(sid, stored, min_peers, wait, timeout, rules)
        if info.rules_fixed:
            self._sessions[name] = info
        return info

    def session_names(self) -> list[str]:
        """Names of every session created in this contract, oldest first."""
        ids = self._call(self.contract.functions.sessionIds())
        return [self._call(self.contract.functions.getSession(i))[1] for i in ids]

    def round(
        self, session: str, round_id: int, attempt: int = 0, *, with_members: bool = False
    ) -> RoundInfo:
        """The state of one round attempt.

        Args:
            with_members: Once the attempt has closed, also read its participants'
                member records (endpoints and keys), in the same call, into
                ``RoundInfo.members``. Defaults to ``False``.
        """
        sid = session_id(session)
        if not with_members:
            opened, closed, participants = self._call(
                self.contract.functions.getRound(sid, round_id, attempt)
            )
            return RoundInfo(round_id, attempt, opened, closed, tuple(participants))
        opened, closed, participants, rows = self._call(
            self.contract.functions.getRoundWithMembers(sid, round_id, attempt)
        )
        members = tuple(
            MemberInfo.from_row(a, row) for a, row in zip(participants, rows, strict=closed)
        )
        return RoundInfo(round_id, attempt, opened, closed, tuple(participants), members)

    def latest_round(self, session: str) -> tuple[int, int, bool] | None:
        """``(round, attempt, closed)`` of the highest round anyone voted in; None before any vote.

        One call, whatever the chain's length: where a node that comes late joins.
        """
        any_vote, round_id, attempt, closed = self._call(
            self.contract.functions.latestRound(session_id(session))
        )
        return (int(round_id), int(attempt), bool(closed)) if any_vote else None

    def presence(self, session: str) -> PresenceInfo:
        """Whom the next round of ``session`` waits for (see the contract's closing rule)."""
        started, members = self._call(self.contract.functions.getPresence(session_id(session)))
        return PresenceInfo(bool(started), tuple(members))

    def vote(self, session: str, round_id: int, attempt: int, member: str) -> VoteInfo:
        """One member's vote in one round attempt."""
        voted, n, prev = self._call(
            self.contract.functions.getVote(
                session_id(session), round_id, attempt, to_checksum_address(member)
            )
        )
        return VoteInfo(voted, n, bytes(prev))

    # ------------------------------------------------------------------ writes

    def add_admin(self, address: str) -> TxReceipt:
        """Make ``address`` an admin (admins only)."""
        return self._send(
            self.contract.functions.addAdmin(to_checksum_address(address)), "addAdmin"
        )

    def remove_admin(self, address: str) -> TxReceipt:
        """Revoke an admin (admins only; never the last one)."""
        return self._send(
            self.contract.functions.removeAdmin(to_checksum_address(address)), "removeAdmin"
        )

    def add_member(self, address: str, spiffe_id: str) -> TxReceipt:
        """Admit ``address`` as a member bound to ``spiffe_id`` (admins only)."""
        check_spiffe_id(spiffe_id)
        return self._send(
            self.contract.functions.addMember(to_checksum_address(address), spiffe_id),
            "addMember",
        )

    def remove_member(self, address: str) -> TxReceipt:
        """Remove a member at once: it can no longer register or vote (admins only)."""
        return self._send(
            self.contract.functions.removeMember(to_checksum_address(address)), "removeMember"
        )

    def register(self, endpoint: str, curve_key: bytes, svid_hash: bytes = ZERO32) -> TxReceipt:
        """Publish this member's endpoint, raw 32-byte CURVE public key and SVID hash."""
        if len(curve_key) != 32 or len(svid_hash) != 32:
            raise ConfigurationError(
                "`curve_key` and `svid_hash` must be 32 raw bytes (decode a Z85 CURVE key "
                "with zmq.utils.z85.decode)."
            )
        return self._send(
            self.contract.functions.register(endpoint, curve_key, svid_hash), "register"
        )

    def fund(self, address: str, wei: int) -> TxReceipt:
        """Send ``wei`` from this client's account to ``address``.

        For development chains, where one funded account pays for the others
        (``swarmlib run`` funds the accounts of nodes beyond the chain's own).
        """
        return self._signing("fund").transfer(to_checksum_address(address), wei)

    def create_session(
        self,
        name: str,
        *,
        min_peers: int = 0,
        merge: str = DEFAULT_MERGE,
        quorum_wait: int = 30,
        round_timeout: int = 600,
        rules: SessionRules | None = None,
    ) -> TxReceipt:
        """Create a training session (admins only).

        Args:
            name: The session's name; several sessions can share one contract.
            min_peers: Fewest participants a round may close with. Defaults to 0:
                the session's rules (this and ``merge``) are fixed by the first
                node that joins, from its own settings.
            merge: The merge strategy the session's rounds use (with
                ``min_peers``). Defaults to ``"mean"``.
            quorum_wait: Seconds after the first vote after which a round with
                ``min_peers`` votes may close without the remaining members.
                Defaults to 30.
            round_timeout: Seconds a node waits for a round to close before it
                gives up with :class:`QuorumTimeout`. Defaults to 600.
            rules: All the session's rules at once (secure aggregation and
                privacy too), instead of ``min_peers`` and ``merge``.
        """
        if rules is None and min_peers:
            rules = SessionRules(min_peers, merge)
        encoded = rules.encode() if rules is not None else ""
        return self._send(
            self.contract.functions.createSession(
                name, rules.min_peers if rules else 0, quorum_wait, round_timeout, encoded
            ),
            "createSession",
        )

    def session_rules(self, name: str) -> SessionRules | None:
        """The rules of session ``name``, or ``None`` while nobody has fixed them.

        Rules read here are the ones this client's votes in that session name
        (:meth:`ready`), unless :meth:`fix_rules` fixed them.
        """
        info = self.session(name)
        if not info.rules_fixed:
            return None
        self._voting_rules.setdefault(name, rules_hash(info.min_peers, info.rules))
        return SessionRules.decode(info.min_peers, info.rules)

    def fix_rules(self, session: str, rules: SessionRules) -> TxReceipt:
        """Fix the rules of a session created without them (members; the first call wins).

        Raises:
            RulesAlreadyFixed: someone fixed them already; read them with
                :meth:`session_rules`.
        """
        receipt = self._send(
            self.contract.functions.fixRules(session_id(session), rules.min_peers, rules.encode()),
            "fixRules",
        )
        self._voting_rules[session] = rules_hash(rules.min_peers, rules.encode())
        return receipt

    def ready(
        self,
        session: str,
        round_id: int,
        attempt: int,
        n_samples: int,
        previous_merged_hash: bytes = ZERO32,
    ) -> TxReceipt:
        """Vote to take part in a round; records the hash of the last merged model loaded.

        The vote names the session rules this client agreed to (read with
        :meth:`session_rules` or fixed with :meth:`fix_rules`; read now if
        neither ran), and the contract refuses it (:class:`RulesMismatch`) when
        they are not the session's.

        Every node votes every round, so the vote is sent without simulating it
        first (one contract run fewer on the chain per vote). A refused vote (the
        round closed without this node, say) is mined as a failed transaction and
        then named: its gas is paid, the error is the same.
        """
        if len(previous_merged_hash) != 32:
            raise ConfigurationError("`previous_merged_hash` must be 32 bytes (a SHA-256).")
        if session not in self._voting_rules:
            self.session_rules(session)
        agreed = self._voting_rules.get(session, ZERO32)
        return self._send(
            self.contract.functions.ready(
                session_id(session), round_id, attempt, n_samples, previous_merged_hash, agreed
            ),
            f"ready(round {round_id}, attempt {attempt})",
            check=False,
        )

    def close_round(self, session: str, round_id: int, attempt: int = 0) -> TxReceipt:
        """Close a round whose quorum wait has passed with at least ``min_peers`` votes."""
        return self._send(
            self.contract.functions.closeRound(session_id(session), round_id, attempt),
            f"closeRound(round {round_id}, attempt {attempt})",
        )

    def ask_to_close(self, session: str, round_id: int, attempt: int = 0) -> TxReceipt:
        """Say, as a voter of the round, that the quorum wait has passed by this node's clock.

        The round closes once ``min_peers`` of its voters have asked (or by the
        contract's other rules), without the members it still expects.
        """
        return self._send(
            self.contract.functions.askToClose(session_id(session), round_id, attempt),
            f"askToClose(round {round_id}, attempt {attempt})",
        )

    def report(
        self, session: str, round_id: int, attempt: int, accused: str, evidence: bytes
    ) -> TxReceipt:
        """Record on chain that ``accused`` sent a merged shard its other owners outvoted.

        ``evidence`` is the SHA-256 of the outvoted copy (32 bytes). Both this member
        and ``accused`` must have voted in that closed round attempt.
        """
        if len(evidence) != 32:
            raise ConfigurationError(f"evidence must be a 32-byte hash; got {len(evidence)} bytes.")
        return self._send(
            self.contract.functions.report(session_id(session), round_id, attempt,
                                           Web3.to_checksum_address(accused), evidence),
            f"report({accused}, round {round_id}, attempt {attempt})",
        )  # fmt: skip

    def receipt(
        self,
        session: str,
        round_id: int,
        attempt: int,
        contribution_hash: bytes,
        merged_hash: bytes,
        *,
        initial: bool = False,
    ) -> TxReceipt:
        """Record what this member took part in a closed round attempt with.

        ``contribution_hash`` is the SHA-256 of the vector it sent, ``merged_hash``
        that of the merged model it loaded (32 bytes each); ``initial`` says the
        round gave everyone the first participant's model. Sent without simulating
        it first, as votes are.
        """
        for name, value in (("contribution_hash", contribution_hash), ("merged_hash", merged_hash)):
            if len(value) != 32:
                raise ConfigurationError(f"`{name}` must be 32 bytes (a SHA-256).")
        return self._send(
            self.contract.functions.receipt(session_id(session), round_id, attempt,
                                            contribution_hash, merged_hash, initial),
            f"receipt(round {round_id}, attempt {attempt})",
            check=False,
        )  # fmt: skip

    def leave(self, session: str) -> TxReceipt:
        """Stop training in ``session``: its rounds no longer wait for this member.

        Voting again (the next ``fit``) brings it back. Leaving twice does nothing.
        """
        return self._send(self.contract.functions.leave(session_id(session)), "leave")

    def wait_for_round(
        self,
        session: str,
        round_id: int,
        attempt: int = 0,
        *,
        timeout: float | None = None,
        poll: float = 0.02,
        max_poll: float = 0.25,
        sleep: Callable[[float], object] = time.sleep,
        vote: TxReceipt | None = None,
    ) -> RoundInfo:
        """Wait until a round attempt closes, closing it once its quorum wait has passed.

        Polls with exponential backoff (``poll`` up to ``max_poll`` seconds),
        reading the round only when a new block was mined; a node with an account
        asks the contract to close the round once it may be closed (see
        :mod:`swarmlib.ledger.waiting`).

        Args:
            timeout: Seconds to wait. Defaults to the session's round timeout.
            sleep: Called between polls with the seconds to wait; it may return
                early (the node wakes up when a peer's message arrives).
            vote: The receipt of this node's ``ready``. When that vote closed
                the round, its ``RoundAgreed`` event already names the
                participants and nothing is read from the chain (``opened_at``
                is then 0: the event does not carry it).

        Returns:
            The closed round, with its participants in vote order and their
            member records (``members``, read in the same call; empty when
            ``vote`` closed it).

        Raises:
            QuorumTimeout: not closed in time; says how many members voted.
            SwarmEnded: fewer than ``min_peers`` members are left in the session
                (the others left it), so the round cannot close: raised once the
                quorum wait has passed, not after the round timeout.
            ChainUnreachable: the chain stopped answering.
        """
        if vote is not None:
            agreed = self.agreed_by(vote, session, round_id, attempt)
            if agreed is not None:
                return agreed
        return RoundWaiter(self, session, round_id, attempt, timeout).wait(poll, max_poll, sleep)

    def agreed_by(
        self, receipt: TxReceipt, session: str, round_id: int, attempt: int
    ) -> RoundInfo | None:
        """The round attempt, if the transaction of ``receipt`` closed it (its ``RoundAgreed``).

        The participants come from the event, in vote order; ``opened_at`` is 0 (the
        event does not carry it).
        """
        sid = session_id(session)
        for event in self.contract.events.RoundAgreed().process_receipt(receipt, errors=DISCARD):
            args = event["args"]
            if (bytes(args["session"]), args["round"], args["attempt"]) == (sid, round_id, attempt):
                return RoundInfo(round_id, attempt, 0, True, tuple(args["participants"]))
        return None

    # ---------------------------------------------------------------- plumbing

    def _rpc(self, call: Callable[[], T], what: str) -> T:
        return with_retries(call, what, self.rpc)

    def _call(self, fn: ContractFunction) -> Any:
        try:
            return self._rpc(fn.call, fn.fn_name)
        except (ContractCustomError, ContractLogicError) as e:
            raise self._revert(e, fn.fn_name) from e

    def _revert(self, e: Exception, what: str) -> ContractRevert:
        return _decode_revert(e, what, self._errors)

    def _send(self, fn: Any, what: str, *, check: bool = True) -> TxReceipt:
        """Simulate (unless ``check`` is false), sign locally, send, await the receipt, check it."""
        return self._signing(what).send(fn, what, check=check)

    def _signing(self, what: str) -> Signer:
        if self.account is None:
            raise ConfigurationError(f"{what} needs an account to sign with; pass `account`.")
        if self._signer is None:
            self._signer = Signer(self.w3, self.account, rpc=self.rpc,
                                  tx_timeout=self.tx_timeout, revert=self._revert)  # fmt: skip
        return self._signer


def _check_code(
    code: bytes, expected: str, address: str, rpc: str, account: LocalAccount | None
) -> None:
    """Refuse an address without code, or (for a client that signs) another contract's code.

    Raises:
        NoContract: nothing is deployed there.
        ContractMismatch: another SwarmLedger version (or another contract); a client
            that only reads gets a SwarmWarning instead.
    """
    if not code:
        raise NoContract(
            f"No contract at {address} on {rpc}. Check the address, and that "
            "--rpc points at the chain it was deployed on (`swarmlib chain deploy`)."
        )
    if code == bytes.fromhex(expected.removeprefix("0x")):
        return
    message = (
        f"The contract at {address} on {rpc} is not the SwarmLedger of this swarmlib version "
        f"({__version__}): it was deployed from another version, or is another contract."
    )
    if account is None:  # reading (an audit of an older deployment, say) may work
        warnings.warn(f"{message} Reads it lacks will fail.", SwarmWarning, stacklevel=3)
        return
    raise ContractMismatch(
        f"{message} Deploy one with this version (`swarmlib chain deploy`) and give every node "
        "its address, or install the version it was deployed with; all nodes of a swarm run the "
        "same version."
    )


def _decode_revert(
    e: Exception, what: str, selectors: dict[bytes, tuple[str, list[str]]]
) -> ContractRevert:
    """The named :class:`ContractRevert` subclass of a custom-error revert."""
    data = getattr(e, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    raw = bytes.fromhex(data[2:]) if isinstance(data, str) and data.startswith("0x") else b""
    known = selectors.get(raw[:4])
    if known is None:
        return ContractRevert(f"The contract refused {what}: {e}", error="", args=())
    name, types = known
    args = tuple(abi_decode(types, raw[4:]))
    cls = getattr(errors, name, ContractRevert)
    revert: ContractRevert = cls(_explain(name, args, what), error=name, args=args)
    return revert


def _explain(name: str, args: tuple[Any, ...], what: str) -> str:
    """A sentence for a contract error that says what to do."""
    shown = ", ".join("0x" + a.hex() if isinstance(a, bytes) else str(a) for a in args)
    hint = getattr(getattr(errors, name, None), "hint", "see the contract")
    return f"The contract refused {what}: {name}({shown}): {hint}."
