"""Where the swarm is and who this node is: :class:`NodeConfig` and its ``SWARMLIB_*`` table.

Precedence, for every setting: an explicit argument (``SwarmNode(min_peers=3)``,
``SwarmCallback(min_peers=3)``) over its ``SWARMLIB_*`` variable over the
default. The session's rules (``min_peers``, ``merge``, ``secure_aggregation``,
``privacy``, ``owner_replicas``) are then checked against the chain at ``join()``: the chain has the
last word.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from typing import Any

from swarmlib.errors import ConfigurationError
from swarmlib.privacy import GaussianDP

__all__ = ["ENV", "RULES", "NodeConfig"]

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
    "min_peers": "SWARMLIB_MIN_PEERS",
    "merge": "SWARMLIB_MERGE",
    "secure_aggregation": "SWARMLIB_SECURE_AGGREGATION",
    "privacy": "SWARMLIB_PRIVACY",
    "owner_replicas": "SWARMLIB_OWNER_REPLICAS",
    "receipts": "SWARMLIB_RECEIPTS",
    "keep_contributions": "SWARMLIB_KEEP_CONTRIBUTIONS",
}
#: The settings that are session rules, checked against the chain at join().
RULES = ("min_peers", "merge", "secure_aggregation", "privacy", "owner_replicas")

_REQUIRED = ("contract", "session", "key_file")


@dataclass
class NodeConfig:
    """Where the swarm is and who this node is. Every field has a ``SWARMLIB_*`` variable (ENV).

    Attributes:
        contract: Address of the SwarmLedger contract. Required.
        session: Name of the training session. Required.
        key_file: This node's Ethereum key file (made on first use). Required.
        rpc: JSON-RPC URL of the chain, or ``"embedded"``.
        key_passphrase: Passphrase of an encrypted key file.
        curve_dir: Folder of the CURVE key pair. Defaults to the key file's folder.
        bind: Control endpoint to bind, ``tcp://host:port``.
        advertise_host: Host peers dial, when it differs from the bound one.
        svid_cert, svid_key, trust_bundle: SVID as PEM files.
        spiffe_socket: A SPIRE agent's Workload API socket (instead of files).
        chain_id: The chain id to expect (checked at join).
        timeout: Seconds the exchange waits for a peer's message.
        min_peers: The session's ``min_peers`` this node expects. ``None``
            takes the session's.
        merge: The session's merge strategy this node expects. ``None`` takes
            the session's.
        secure_aggregation: Whether this node expects secure aggregation
            (``SWARMLIB_SECURE_AGGREGATION=1``). ``None`` takes the session's.
        privacy: The differential privacy this node expects, a
            :class:`~swarmlib.privacy.GaussianDP` (``SWARMLIB_PRIVACY`` holds its
            fields as JSON, e.g. ``{"clip_norm": 1, "noise_multiplier": 1.1}``).
            ``None`` takes the session's.
        owner_replicas: How many participants this node expects to merge each
            shard (``SWARMLIB_OWNER_REPLICAS``; 3 outvotes one wrong owner).
            ``None`` takes the session's.
        receipts: Record each merged round's receipt on chain (the SHA-256 of
            this node's contribution and of the model it loaded; one small
            transaction per round, sent in the background). Defaults to ``True``.
        keep_contributions: A folder where this node writes each contribution it
            sends (``.npy`` and a ``.json`` of its receipt), for disclosure to an
            auditor (``swarmlib audit --verify DIR``). Defaults to keeping none.
    """

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
    min_peers: int | None = None
    merge: str | None = None
    secure_aggregation: bool | None = None
    privacy: GaussianDP | None = None
    owner_replicas: int | None = None
    receipts: bool = True
    keep_contributions: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> NodeConfig:
        """Fields from ``overrides``, else from the environment, else defaults.

        Raises:
            ConfigurationError: a required setting is missing (the message names
                its variable), a number does not parse, or an override is not a field.
        """
        unknown = sorted(set(overrides) - set(ENV))
        if unknown:
            raise ConfigurationError(
                f"Unknown node setting(s) {', '.join(unknown)}. Known: {', '.join(ENV)}."
            )
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        types = {f.name: str(f.type) for f in fields(cls)}
        for name, var in ENV.items():
            if overrides.get(name) is not None:
                values[name] = overrides[name]
            elif env.get(var):
                values[name] = _parse(var, env[var], types[name])
        config = cls(**values)
        missing = [ENV[n] for n in _REQUIRED if not getattr(config, n)]
        if missing:
            raise ConfigurationError(
                f"Missing setting(s): {', '.join(missing)}. Pass them to SwarmNode(...) or set "
                "the environment variables (`swarmlib run` sets them for local swarms)."
            )
        return config


def _parse(var: str, raw: str, kind: str) -> Any:
    if "bool" in kind:
        flag = raw.strip().lower()
        if flag not in ("1", "true", "yes", "0", "false", "no"):
            raise ConfigurationError(f"{var}={raw!r} is not a flag: use 1 or 0.")
        return flag in ("1", "true", "yes")
    if "GaussianDP" in kind:
        try:
            fields_ = json.loads(raw)
            return GaussianDP(**fields_)
        except (ValueError, TypeError) as e:
            raise ConfigurationError(
                f"{var}={raw!r} is not a privacy setting: expected JSON such as "
                '{"clip_norm": 1.0, "noise_multiplier": 1.1, "delta": 1e-5}.'
            ) from e
    try:
        return int(raw) if "int" in kind else float(raw) if "float" in kind else raw
    except ValueError as e:
        raise ConfigurationError(f"{var}={raw!r} is not a number.") from e
