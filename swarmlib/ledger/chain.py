"""Connecting to a chain: the embedded EVM (default) or any Ethereum JSON-RPC URL.

``"embedded"`` runs py-evm in this process through eth-tester: nothing to
install or start, ten funded dev accounts, blocks mined on every transaction.
For several local processes, ``swarmlib chain serve`` puts the same embedded
chain behind a JSON-RPC endpoint on 127.0.0.1 (:mod:`swarmlib.ledger.server`).
Any other value is a JSON-RPC URL: anvil, geth (Clique), Besu (QBFT), …
"""

from __future__ import annotations

import ast
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.exceptions import ProviderConnectionError
from web3.types import RPCEndpoint, RPCResponse

from swarmlib.errors import ChainUnreachable, ConfigurationError, WrongChain

__all__ = [
    "DEV_KEYS",
    "EMBEDDED",
    "EmbeddedProvider",
    "connect",
    "dev_accounts",
    "embedded_provider",
    "with_retries",
]

logger = logging.getLogger(__name__)

EMBEDDED = "embedded"

#: Private keys of eth-tester's ten pre-funded accounts (keys 1..10). Dev use only.
DEV_KEYS: tuple[str, ...] = tuple(f"0x{i:064x}" for i in range(1, 11))

T = TypeVar("T")

_NETWORK_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ProviderConnectionError,
    ConnectionError,
)


def embedded_provider() -> EmbeddedProvider:
    """A new embedded chain (py-evm in this process).

    Raises:
        ConfigurationError: eth-tester is not installed (the ``embedded`` extra).
    """
    try:
        import eth_tester  # noqa: F401
    except ImportError as e:
        raise ConfigurationError(
            "The embedded chain needs eth-tester and py-evm: pip install 'swarmlib[embedded]' "
            "(or point the nodes at a chain with --rpc / SWARMLIB_RPC)."
        ) from e
    return EmbeddedProvider()


class EmbeddedProvider(EthereumTesterProvider):
    """eth-tester's in-process provider, answering reverts the way JSON-RPC nodes do.

    Upstream raises eth-tester's ``TransactionFailed`` with the revert data
    flattened into a string; geth and anvil answer ``{"code": 3, "message":
    "execution reverted", "data": "0x…"}``. Answering the same way lets web3
    decode custom errors identically on every chain, and lets
    ``swarmlib chain serve`` forward answers unchanged.

    eth-tester also lets block time advance by one second per block, whatever
    the wall clock says; a quorum wait would then never pass on an idle chain.
    Before every transaction or call this provider moves the pending block's
    timestamp up to the wall clock, as a real chain's block producer would.
    """

    _CLOCKED = frozenset(
        {"eth_sendRawTransaction", "eth_sendTransaction", "eth_call", "eth_estimateGas"}
    )

    def _sync_clock(self) -> None:
        tester = self.ethereum_tester
        assert tester is not None
        now = int(time.time())
        if now > tester.get_block_by_number("pending")["timestamp"]:
            tester.time_travel(now)

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        from eth_tester.exceptions import TransactionFailed

        if method in self._CLOCKED:
            self._sync_clock()
        namespace, _, endpoint = method.partition("_")
        delegator = (self.api_endpoints or {}).get(namespace, {}).get(endpoint)
        if delegator is None:
            return super().make_request(method, params)
        try:
            result = delegator(self.ethereum_tester, params)
        except TransactionFailed as e:
            raw = e.args[0] if e.args else b""
            if isinstance(raw, Exception):
                raw = raw.args[0] if raw.args else b""
            if isinstance(raw, str) and raw[:2] in ("b'", 'b"'):  # eth_call: the bytes' repr
                raw = ast.literal_eval(raw)
            data = raw.hex() if isinstance(raw, bytes) else ""
            return {
                "jsonrpc": "2.0",
                "id": 0,
                "error": {"code": 3, "message": "execution reverted", "data": f"0x{data}"},
            }
        except NotImplementedError:
            return super().make_request(method, params)
        return {"jsonrpc": "2.0", "id": 0, "result": result}


def with_retries(call: Callable[[], T], what: str, url: str, *, attempts: int = 4) -> T:
    """Run ``call``; on a network error retry with backoff, then raise ChainUnreachable."""
    delay = 0.25
    for attempt in range(attempts):
        try:
            return call()
        except _NETWORK_ERRORS as e:
            if attempt == attempts - 1:
                raise ChainUnreachable(
                    f"The chain at {url} did not answer ({what}) after {attempts} tries: {e}. "
                    "Check that the node is running and the URL is right; for a local dev "
                    "chain run `swarmlib chain serve`."
                ) from e
            logger.info("%s: %s failed (%s); retrying in %.2fs", url, what, e, delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def connect(
    rpc: str = EMBEDDED, *, expected_chain_id: int | None = None, timeout: float = 10.0
) -> Web3:
    """A ``Web3`` connected to ``rpc``, checked to answer (and to be the expected chain).

    Args:
        rpc: ``"embedded"`` for the in-process chain, or an ``http(s)://`` URL.
            Defaults to ``"embedded"``.
        expected_chain_id: Refuse a chain with another id. Defaults to no check.
        timeout: Seconds each JSON-RPC request may take. Defaults to 10.

    Raises:
        ChainUnreachable: nothing answers at ``rpc`` after retries.
        WrongChain: the chain id is not ``expected_chain_id``.
        ConfigurationError: ``rpc`` is neither ``"embedded"`` nor an http(s) URL.
    """
    if rpc == EMBEDDED:
        w3 = Web3(embedded_provider())
    elif rpc.startswith(("http://", "https://")):
        # web3 checks the chain id before every call and transaction; an endpoint's id
        # does not change, so it is asked once (web3's own request cache, for that only)
        provider = HTTPProvider(
            rpc,
            request_kwargs={"timeout": timeout},
            cache_allowed_requests=True,
            cacheable_requests={RPCEndpoint("eth_chainId")},
        )
        w3 = Web3(provider)
    else:
        raise ConfigurationError(
            f"Invalid value for `rpc`: {rpc!r}. Expected 'embedded' or an http(s):// URL."
        )
    chain_id = with_retries(lambda: w3.eth.chain_id, "eth_chainId", rpc)
    if expected_chain_id is not None and chain_id != expected_chain_id:
        raise WrongChain(
            f"The chain at {rpc} has chain id {chain_id}, not {expected_chain_id}. "
            "Point --rpc at the swarm's chain, or fix the expected chain id."
        )
    return w3


def dev_accounts() -> list[LocalAccount]:
    """The embedded chain's funded dev accounts (never use these keys on a real network)."""
    return [Account.from_key(k) for k in DEV_KEYS]
