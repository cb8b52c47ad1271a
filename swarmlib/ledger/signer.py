"""Signing and sending one account's transactions, with few JSON-RPC calls per transaction.

A node sends one vote per round, so the calls a transaction costs are on the
training's critical path. :class:`Signer` keeps what it can know locally: the
next nonce (this account's transactions go through it), the fee fields (for a
few seconds) and an upper bound of what the account can still spend (refreshed
from the chain whenever a transaction might not be covered). A send is then:
simulate (``eth_call``, which also names a refusal; the first send to each contract
function estimates its gas instead; the caller may skip it), ``eth_sendRawTransaction``,
and the receipt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, TimeExhausted
from web3.types import TxReceipt

from swarmlib.errors import ContractRevert, InsufficientFunds, TransactionFailed
from swarmlib.ledger.chain import with_retries

__all__ = ["Signer"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
_FEE_TTL_S = 5.0  # fee fields are reused this long (maxFeePerGas allows twice the base fee)


class Signer:
    """Signs transactions locally with ``account`` and sends them to ``w3``.

    Args:
        w3: The chain.
        account: The signing account (its key never leaves this process).
        rpc: The chain's URL, for messages.
        tx_timeout: Seconds to wait for a receipt.
        revert: Turns a simulation's revert into a named error.
    """

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        *,
        rpc: str,
        tx_timeout: float,
        revert: Callable[[Exception, str], ContractRevert],
    ):
        self.w3 = w3
        self.account = account
        self.rpc = rpc
        self.tx_timeout = tx_timeout
        self._revert = revert
        self._chain_id: int | None = None
        self._nonce: int | None = None
        self._fees: tuple[dict[str, int], int, float] | None = None
        self._spendable: int | None = None
        self._limits: dict[str, int] = {}  # gas limit per contract function

    def _call(self, call: Callable[[], T], what: str) -> T:
        return with_retries(call, what, self.rpc)

    def send(self, fn: Any, what: str, *, check: bool = True) -> TxReceipt:
        """Simulate, sign, send, await the receipt and check its status.

        The first transaction to a contract function estimates its gas
        (``eth_estimateGas``, which also names a refusal) and keeps a gas limit of
        twice the estimate plus 100,000; later ones only simulate it with
        ``eth_call`` (on the embedded chain, 25 ms of the chain's CPU against 100
        ms for an estimate). A transaction that runs out of gas all the same is
        estimated and sent again, once.

        Args:
            check: Simulate before sending, so that a refusal costs no gas.
                ``False`` skips it for a transaction that is refused rarely and sent
                often (a node's vote, every round): a refusal is then mined as a
                failed transaction, which pays its gas, and named by a simulation
                afterwards, as is any transaction the chain changed under.

        Raises:
            ContractRevert: the contract refuses (named after its custom error).
            InsufficientFunds: the account cannot pay for the gas.
            TransactionFailed: mined with status 0, or not mined in time.
            ChainUnreachable: the chain stopped answering.
        """
        name = getattr(fn, "fn_name", what)
        limit = self._limits.get(name)
        if limit is None:
            limit = self._limits[name] = self._estimate(fn, what)
        elif check:
            self._simulate(fn, what)
        try:
            return self._send_once(fn, what, limit)
        except _OutOfGas:
            limit = self._limits[name] = self._estimate(fn, what)
        try:
            return self._send_once(fn, what, limit)
        except _OutOfGas:
            message = f"{what} ran out of gas twice (limit {limit}); retry."
            raise TransactionFailed(message) from None

    def _send_once(self, fn: Any, what: str, limit: int) -> TxReceipt:
        """Sign and send with ``limit`` gas; a stale nonce is read from the chain again, once."""
        try:
            return self._sign_and_send(fn, what, limit)
        except _StaleNonce:
            pass  # another sender used this account: ask the chain for the nonce, once
        try:
            return self._sign_and_send(fn, what, limit)
        except _StaleNonce as e:
            raise TransactionFailed(
                f"{what}: the chain refused the nonce twice ({e}). Is another process "
                f"sending from {self.account.address} at the same time?"
            ) from e

    def transfer(self, to: str, wei: int) -> TxReceipt:
        """Send ``wei`` to ``to`` (on a dev chain: fund a new node's account)."""
        return self.send(_Transfer(to, wei), f"transfer of {wei} wei to {to}")

    def _estimate(self, fn: Any, what: str) -> int:
        """A gas limit for ``fn``: twice the estimate plus 100,000.

        The estimate is for the chain as it is now; by the time the transaction is
        mined another vote may have made this one the first or the closing vote of
        a round, which costs more. Unused gas is not charged.
        """
        sender = self.account.address
        try:
            gas = int(self._call(lambda: fn.estimate_gas({"from": sender}), "eth_estimateGas"))
        except (ContractCustomError, ContractLogicError) as e:
            raise self._revert(e, what) from e
        except Exception as e:  # some chains refuse to estimate for an unfunded sender
            text = str(e).lower()
            if "afford" in text or "insufficient funds" in text:
                raise InsufficientFunds(
                    f"Account {sender} cannot pay for {what}: {e}. Fund the account on {self.rpc}."
                ) from e
            raise
        return gas * 2 + 100_000

    def _simulate(self, fn: Any, what: str) -> None:
        """Run ``fn`` without sending it; a refusal raises its named error and costs no gas."""
        try:
            self._call(lambda: fn.call({"from": self.account.address}), "eth_call")
        except (ContractCustomError, ContractLogicError) as e:
            raise self._revert(e, what) from e

    def _sign_and_send(self, fn: Any, what: str, limit: int) -> TxReceipt:
        w3, sender = self.w3, self.account.address
        fees, price = self._fee_fields()
        cost = limit * price
        if self._spendable is None or self._spendable < cost:
            self._spendable = int(self._call(lambda: w3.eth.get_balance(sender), "eth_getBalance"))
        if self._spendable < cost:
            have, self._spendable = self._spendable, None
            raise InsufficientFunds(
                f"Account {sender} has {have} wei but {what} may cost up to {cost} wei "
                f"({limit} gas at {price} wei). Fund the account on {self.rpc}."
            )
        if self._nonce is None:
            self._nonce = int(
                self._call(lambda: w3.eth.get_transaction_count(sender, "pending"), "nonce")
            )
        if self._chain_id is None:
            self._chain_id = int(self._call(lambda: w3.eth.chain_id, "eth_chainId"))
        tx = {"from": sender, "nonce": self._nonce, "gas": limit, "chainId": self._chain_id,
              **fees}  # fmt: skip
        signed = self.account.sign_transaction(fn.build_transaction(tx))
        try:
            tx_hash = self._call(
                lambda: w3.eth.send_raw_transaction(signed.raw_transaction),
                "eth_sendRawTransaction",
            )
        except Exception as e:
            # a send whose answer was lost (a stalled chain, a dropped connection) may have
            # reached the chain: then its retry is refused (nonce used), and the transaction
            # is this one, already on its way; it must not be signed again as another
            if not self._known(signed.hash):
                self._nonce = None
                if "nonce" in str(e).lower():
                    raise _StaleNonce(str(e)) from e
                raise
            logger.warning("%s: the chain had it already (its answer was lost); waiting", what)
            tx_hash = signed.hash
        self._nonce += 1
        self._spendable -= cost
        try:
            receipt = self._call(
                lambda: w3.eth.wait_for_transaction_receipt(
                    tx_hash, timeout=self.tx_timeout, poll_latency=0.02
                ),
                "eth_getTransactionReceipt",
            )
        except TimeExhausted as e:
            self._nonce = None
            raise TransactionFailed(
                f"{what} (tx {tx_hash.hex()}) was not mined within {self.tx_timeout:g}s on "
                f"{self.rpc}. Is the chain producing blocks?"
            ) from e
        if receipt["status"] != 1:
            # the chain changed under the transaction: name the refusal if there is one
            self._simulate(fn, what)
            if receipt["gasUsed"] >= limit:
                raise _OutOfGas()
            raise TransactionFailed(
                f"{what} (tx {tx_hash.hex()}) was mined but failed (status 0, gas used "
                f"{receipt['gasUsed']}). The chain state changed between the check and the "
                "transaction; retry."
            )
        logger.debug(
            "%s mined in block %d, gas %d", what, receipt["blockNumber"], receipt["gasUsed"]
        )
        return receipt

    def _known(self, tx_hash: HexBytes) -> bool:
        """Whether the chain knows a transaction (pending or mined); False if it cannot say."""
        try:
            self._call(lambda: self.w3.eth.get_transaction(tx_hash), "eth_getTransactionByHash")
        except Exception:  # not found, or the chain is still unreachable
            return False
        return True

    def _fee_fields(self) -> tuple[dict[str, int], int]:
        """EIP-1559 fields (or a legacy gas price), and the most a unit of gas may cost."""
        now = time.monotonic()
        if self._fees is not None and now - self._fees[2] < _FEE_TTL_S:
            return self._fees[0], self._fees[1]
        w3 = self.w3
        base = self._call(lambda: w3.eth.get_block("latest"), "eth_getBlock").get("baseFeePerGas")
        if base is not None:
            tip = 10**9
            fields = {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * int(base) + tip}
            price = fields["maxFeePerGas"]
        else:
            price = int(self._call(lambda: w3.eth.gas_price, "eth_gasPrice"))
            fields = {"gasPrice": price}
        self._fees = (fields, price, now)
        return fields, price


class _Transfer:
    """A plain value transfer, shaped like the contract functions :meth:`Signer.send` takes."""

    fn_name = "transfer"

    def __init__(self, to: str, wei: int):
        self.to, self.wei = to, wei

    def build_transaction(self, tx: dict[str, Any]) -> dict[str, Any]:
        return {**tx, "to": self.to, "value": self.wei}

    def estimate_gas(self, tx: dict[str, Any]) -> int:
        return 21_000  # a transfer to an account without code

    def call(self, tx: dict[str, Any]) -> None:
        return None  # nothing to simulate: only the balance can refuse it, checked before


class _OutOfGas(Exception):
    """A transaction used all its gas: the cached limit is too low for it now."""


class _StaleNonce(Exception):
    """The chain refused the nonce this signer counted (the account sent elsewhere too)."""
