"""The permissioned chain: the SwarmLedger contract, its client, and the chains it runs on."""

from swarmlib.ledger.artifact import Artifact, load_artifact
from swarmlib.ledger.chain import EMBEDDED, EmbeddedProvider, connect, dev_accounts
from swarmlib.ledger.client import (
    LedgerClient,
    MemberInfo,
    RoundInfo,
    SessionInfo,
    VoteInfo,
    check_spiffe_id,
    session_id,
)
from swarmlib.ledger.rules import DEFAULT_MERGE, SessionRules

__all__ = [
    "DEFAULT_MERGE",
    "EMBEDDED",
    "Artifact",
    "EmbeddedProvider",
    "LedgerClient",
    "MemberInfo",
    "RoundInfo",
    "SessionInfo",
    "SessionRules",
    "VoteInfo",
    "check_spiffe_id",
    "connect",
    "dev_accounts",
    "load_artifact",
    "session_id",
]
