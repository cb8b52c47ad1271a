"""Every error swarmlib raises, under one root.

Catch :class:`SwarmError` to handle anything the library raises. Leaves also
inherit the builtin they resemble, so ``except TimeoutError`` still works for a
:class:`PeerTimeout`::

    SwarmError
    ├── ConfigurationError (ValueError)      a bad argument or setting; fix the call
    ├── NodeProcessFailed                    a node process of a local swarm failed
    ├── MergeError (ValueError)              updates that cannot be merged
    │   ├── ShapeMismatch                    a peer's update has another shape
    │   ├── DtypeMismatch                    a peer's update has another dtype
    │   ├── NonFiniteUpdate                  a peer's update holds NaN or Inf (refused)
    │   └── InvalidWeight                    a merge weight is zero, negative or not finite
    ├── TransportError (ConnectionError)     the peer-to-peer exchange failed
    │   ├── RoundFailed                      this round cannot complete; retry without
    │   │   │                                ``err.culprits``
    │   │   ├── PeerTimeout (TimeoutError)   participants sent nothing within the timeout
    │   │   ├── PeerRejected                 a participant's contribution was refused
    │   │   └── RoundForfeited               secure aggregation failed after the reveal: not
    │   │                                    retried, the node keeps its own weights
    │   └── FetchFailed                      a late node could not fetch the swarm's model
    ├── PrivacyBudgetSpent                   the next round would exceed target_epsilon
    ├── IdentityError                        a node identity could not be had or verified
    │   ├── IdentityUnavailable              no SVID: socket or file missing, agent silent
    │   └── PeerIdentityRejected             a peer's SVID or binding failed verification
    └── LedgerError                          the chain could not be used
        ├── ChainUnreachable (ConnectionError)  no answer from the JSON-RPC URL after retries
        ├── WrongChain                       the URL serves another chain id than expected
        ├── NoContract                       no contract code at the given address
        │   └── ContractMismatch             the code there is another SwarmLedger version
        ├── InsufficientFunds                the node's account cannot pay for gas
        ├── TransactionFailed                mined with status 0, or not mined in time
        ├── QuorumTimeout (TimeoutError)     a round did not reach min_peers in time
        ├── SwarmEnded                       too few members are left (raised at once)
        └── ContractRevert                   the contract refused the call (``err.error``)
            ├── NotAdmin                     only an admin may do that
            ├── NotAMember                   not a member, or removed
            ├── NotRegistered                a member that has not registered yet
            ├── AlreadyMember, AlreadyAdmin, LastAdmin
            ├── InvalidSpiffeId (ValueError) not a well-formed spiffe://trust-domain/path
            ├── InvalidRegistration          empty endpoint or CURVE key
            ├── SessionExists, UnknownSession, InvalidSessionParameters
            ├── RulesAlreadyFixed            a session's rules were fixed already
            ├── RulesNotFixed                no vote before a session's rules are fixed
            ├── RulesMismatch                a vote cast under other rules than the session's
            ├── AlreadyVoted                 this member already voted in that round attempt
            ├── RoundClosed                  that round attempt is closed
            ├── PreviousAttemptOpen          attempt n+1 before attempt n closed
            ├── QuorumNotReached             fewer than min_peers voted
            ├── QuorumWaitNotOver            closing before the quorum wait passed
            ├── NotVoted                     asking to close a round this member did not vote in
            └── RoundNotOpen                 nobody voted in that round attempt yet

Messages that are merely *foreign* (a non-participant, another round, a replay,
a tampered or truncated frame) never raise: they are dropped and logged, and the
round goes on.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AlreadyAdmin",
    "AlreadyMember",
    "AlreadyVoted",
    "ChainUnreachable",
    "ConfigurationError",
    "ContractMismatch",
    "ContractRevert",
    "DtypeMismatch",
    "FetchFailed",
    "IdentityError",
    "IdentityUnavailable",
    "InsufficientFunds",
    "InvalidRegistration",
    "InvalidSessionParameters",
    "InvalidSpiffeId",
    "InvalidWeight",
    "LastAdmin",
    "LedgerError",
    "MergeError",
    "NoContract",
    "NodeProcessFailed",
    "NonFiniteUpdate",
    "NotAMember",
    "NotAdmin",
    "NotRegistered",
    "NotVoted",
    "PeerIdentityRejected",
    "PeerRejected",
    "PeerTimeout",
    "PreviousAttemptOpen",
    "PrivacyBudgetSpent",
    "QuorumNotReached",
    "QuorumTimeout",
    "QuorumWaitNotOver",
    "RoundClosed",
    "RoundFailed",
    "RoundForfeited",
    "RoundNotOpen",
    "RulesAlreadyFixed",
    "RulesMismatch",
    "RulesNotFixed",
    "SessionExists",
    "ShapeMismatch",
    "SwarmEnded",
    "SwarmError",
    "SwarmWarning",
    "TransactionFailed",
    "TransportError",
    "UnknownSession",
    "WrongChain",
]


class SwarmError(Exception):
    """Root of every exception raised by swarmlib."""


class SwarmWarning(UserWarning):
    """Root of every warning issued by swarmlib."""


class ConfigurationError(SwarmError, ValueError):
    """An argument or setting is invalid. The message names it and says what is expected."""


class NodeProcessFailed(SwarmError):
    """A node process started by :func:`swarmlib.launcher.run_nodes` failed or was stopped."""


class MergeError(SwarmError, ValueError):
    """Updates cannot be merged.

    Attributes:
        peer: Name of the peer whose update was refused, or ``None`` if no single
            peer is at fault.
        layer: Name of the layer (or layer range) concerned, or ``None``.
    """

    def __init__(self, message: str, *, peer: str | None = None, layer: str | None = None):
        super().__init__(message)
        self.peer = peer
        self.layer = layer


class ShapeMismatch(MergeError):
    """A peer's update does not have the shape of the others."""


class DtypeMismatch(MergeError):
    """A peer's update does not have the dtype of the others."""


class NonFiniteUpdate(MergeError):
    """A peer's update contains NaN or Inf. It is refused, never merged."""


class InvalidWeight(MergeError):
    """A merge weight is zero, negative or not finite."""


class TransportError(SwarmError, ConnectionError):
    """The peer-to-peer exchange failed."""


class RoundFailed(TransportError):
    """A sync round could not complete on this node.

    The caller may retry the round (as the next attempt) without the peers in
    :attr:`culprits`, as long as enough participants remain.

    Attributes:
        culprits: Names of the participants that caused the failure.
        round_id: The round that failed.
        attempt: The attempt of that round that failed.
    """

    def __init__(self, message: str, *, culprits: Sequence[str], round_id: int, attempt: int):
        super().__init__(message)
        self.culprits = tuple(culprits)
        self.round_id = round_id
        self.attempt = attempt


class PeerTimeout(RoundFailed, TimeoutError):
    """Participants sent nothing expected within the timeout; :attr:`culprits` names them."""


class PeerRejected(RoundFailed):
    """A participant's contribution was refused (bad model size, NaN/Inf, bad weight), or
    the copies of a shard's replicated owners disagree with no majority."""


class RoundForfeited(RoundFailed):
    """A securely aggregated round failed after this node had revealed its masks.

    An owner may already hold the sum of its shard over this attempt's
    participants; a retry without the participant that failed would give it a
    second sum, and the difference is that participant's values. So the round is
    not retried: :meth:`SwarmNode.sync` returns this node's own weights, unmerged
    (``SyncResult.merged`` is False), and the next round merges again.
    """


class FetchFailed(TransportError):
    """A late node could not fetch the swarm's latest model from a peer.

    No answer, the peer no longer holds it, or what came is not the model whose
    hash the chain records. The node then joins with its own weights.
    """


class IdentityError(SwarmError):
    """A node identity could not be obtained or verified."""


class IdentityUnavailable(IdentityError):
    """This node has no SVID: the Workload API socket or the PEM files are missing or unusable."""


class PeerIdentityRejected(IdentityError):
    """A peer's SVID or identity binding failed verification.

    Attributes:
        reason: One of ``"malformed"``, ``"not-leaf"``, ``"untrusted"``,
            ``"expired"``, ``"not-yet-valid"``, ``"not-bound"``,
            ``"hash-mismatch"``, ``"binding"``.
        claimed: The SPIFFE ID the peer presented, if any.
    """

    def __init__(self, message: str, *, reason: str, claimed: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.claimed = claimed


class LedgerError(SwarmError):
    """The chain could not be used."""


class ChainUnreachable(LedgerError, ConnectionError):
    """No answer from the chain's JSON-RPC endpoint after retries."""


class WrongChain(LedgerError):
    """The endpoint serves another chain than the one expected."""


class NoContract(LedgerError):
    """There is no contract code at the given address."""


class ContractMismatch(NoContract):
    """The code at the address is not this package's SwarmLedger (another version or contract)."""


class InsufficientFunds(LedgerError):
    """The node's account cannot pay for the gas of a transaction."""


class TransactionFailed(LedgerError):
    """A transaction was mined with status 0, or was not mined within the timeout."""


class QuorumTimeout(LedgerError, TimeoutError):
    """A round did not reach ``min_peers`` votes within the round timeout."""


class PrivacyBudgetSpent(SwarmError):
    """Another round would spend more privacy budget than the session's ``target_epsilon``.

    Raised by :meth:`SwarmNode.sync` before it votes, on every node at the same
    round (the rounds are counted on chain). The Keras callback stops training
    with the model of the last merge.

    Attributes:
        epsilon: The epsilon spent so far.
    """

    def __init__(self, message: str, *, epsilon: float):
        super().__init__(message)
        self.epsilon = epsilon


class SwarmEnded(LedgerError):
    """Fewer than ``min_peers`` members are left in the session: the others left it.

    Raised while waiting for a round, at once instead of after the round
    timeout. The callback catches it and trains on without the swarm.
    """


class ContractRevert(LedgerError):
    """The contract refused a call.

    Attributes:
        error: The contract's custom error name (e.g. ``"NotAMember"``).
        error_args: Its decoded arguments.
        hint: What to do about it (each subclass says; the message ends with it).
    """

    hint = "see the contract"

    def __init__(self, message: str, *, error: str = "", args: tuple[object, ...] = ()):
        super().__init__(message)
        self.error = error
        self.error_args = args


class NotAdmin(ContractRevert):
    """Only an admin may do that."""

    hint = "only an admin may do this; use an admin's key"


class NotAMember(ContractRevert):
    """The account is not a member of the swarm, or was removed."""

    hint = (
        "the account is not an active member: an admin adds it with `swarmlib member add` (a "
        "removed member must be added again)"
    )


class NotRegistered(ContractRevert):
    """The member has not registered its endpoint and keys yet."""

    hint = "the member must register its endpoint and keys first"


class AlreadyMember(ContractRevert):
    """The account is already an active member."""

    hint = "the account is already an active member"


class AlreadyAdmin(ContractRevert):
    """The account is already an admin."""

    hint = "the account is already an admin"


class LastAdmin(ContractRevert):
    """The last admin cannot be removed."""

    hint = "the last admin cannot be removed; add another admin first"


class InvalidSpiffeId(ContractRevert, ValueError):
    """Not a well-formed ``spiffe://trust-domain/path`` ID."""

    hint = "expected spiffe://<trust-domain>/<path>"


class InvalidRegistration(ContractRevert):
    """Registration data is empty or too long."""

    hint = "the endpoint and the CURVE key must not be empty"


class SessionExists(ContractRevert):
    """A training session of that name already exists."""

    hint = "a session of that name exists; pick another name"


class UnknownSession(ContractRevert):
    """No training session of that name exists."""

    hint = "no such training session; an admin creates it first"


class InvalidSessionParameters(ContractRevert):
    """``min_peers`` and the round timeout must be positive and the name non-empty."""

    hint = (
        "round_timeout must be positive, and min_peers and the rules are given together (or "
        "neither)"
    )


class AlreadyVoted(ContractRevert):
    """This member already voted in that round attempt."""

    hint = "this member already voted in that round attempt"


class RoundClosed(ContractRevert):
    """That round attempt is already closed."""

    hint = "that round attempt is closed; vote in the next attempt or round"


class PreviousAttemptOpen(ContractRevert):
    """Attempt n+1 of a round can only be voted once attempt n is closed."""

    hint = "the previous attempt of this round is still open"


class QuorumNotReached(ContractRevert):
    """Fewer than ``min_peers`` members voted."""

    hint = "fewer than min_peers members voted"


class QuorumWaitNotOver(ContractRevert):
    """The round cannot be closed before the quorum wait has passed."""

    hint = "the quorum wait has not passed yet"


class RulesAlreadyFixed(ContractRevert):
    """The session's rules were fixed already (by its creator or the first node)."""

    hint = (
        "the session's rules were fixed already; read them with `swarmlib audit` and use the same"
    )


class RulesMismatch(ContractRevert):
    """A vote named other rules than the session's (its ``rulesHash`` is not the session's)."""

    hint = (
        "this node votes under other rules than the session's (min_peers, merge, secure "
        "aggregation, privacy): read them with `swarmlib audit` and use the same"
    )


class RulesNotFixed(ContractRevert):
    """Nobody fixed the session's rules yet, so no vote can be taken."""

    hint = "the session's rules are not fixed yet: a node fixes them when it joins (SwarmNode.join)"


class NotVoted(ContractRevert):
    """Only a member that voted in a round attempt may ask to close it."""

    hint = "only a member that voted in that round attempt may ask to close it"


class RoundNotOpen(ContractRevert):
    """Nobody voted in that round attempt yet."""

    hint = "nobody voted in that round attempt yet"
