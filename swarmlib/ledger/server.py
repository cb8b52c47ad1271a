"""``swarmlib chain serve``: the embedded chain behind a JSON-RPC endpoint, for local processes.

**For development only.** This is a thin HTTP front on eth-tester (py-evm): one
request at a time, blocks mined on every transaction, ten funded accounts whose
keys are public. It lets several local processes (the nodes that ``swarmlib
run`` starts) share one chain without installing anything. Use anvil for
heavier local tests and a permissioned network (geth Clique, Besu QBFT) for real
deployments. It binds 127.0.0.1 unless told otherwise.

Requests go through web3's eth-tester middleware (wire format in, Python values
out) and answers are turned back into the JSON-RPC wire format (hex quantities
and data), so any Ethereum client can talk to it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from web3 import Web3

from swarmlib.ledger.chain import EmbeddedProvider, embedded_provider

__all__ = ["ChainServer", "to_wire"]

logger = logging.getLogger(__name__)

_MAX_REQUEST = 8 << 20

#: Methods that change nothing on the chain. Any other request may, and empties the memo.
_READ_ONLY = frozenset(
    {
        "eth_blockNumber",
        "eth_call",
        "eth_chainId",
        "eth_estimateGas",
        "eth_feeHistory",
        "eth_gasPrice",
        "eth_getBalance",
        "eth_getBlockByHash",
        "eth_getBlockByNumber",
        "eth_getCode",
        "eth_getLogs",
        "eth_getStorageAt",
        "eth_getTransactionByHash",
        "eth_getTransactionCount",
        "eth_getTransactionReceipt",
        "eth_maxPriorityFeePerGas",
        "net_version",
        "web3_clientVersion",
    }
)
#: Reads whose answers are remembered until the chain changes: the ones waiting nodes repeat.
_MEMO_METHODS = frozenset({"eth_blockNumber", "eth_call"})
_MEMO_LIMIT = 1024


def to_wire(value: Any) -> Any:
    """Python values from eth-tester → JSON-RPC wire format (hex quantities and data)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {
            k: "0x" + v.to_bytes(256, "big").hex()  # a bloom filter is 256 bytes of data
            if k == "logsBloom" and isinstance(v, int)
            else to_wire(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    return value


class _Server(ThreadingHTTPServer):
    # the default backlog of 5 resets connections when a few dozen nodes call at once
    request_queue_size = 128

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()  # kept alive, closed by ChainServer.stop
        self.connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer (a node killed, say) is no error of the chain."""
        error = sys.exc_info()[1]
        if isinstance(error, (BrokenPipeError, ConnectionResetError)):
            logger.debug("%s went away before its answer: %s", client_address, error)
            return
        super().handle_error(request, client_address)


class ChainServer:
    """An embedded chain served over HTTP JSON-RPC.

    Args:
        host: Address to bind. Defaults to ``"127.0.0.1"``.
        port: Port to bind; 0 picks a free one. Defaults to 8545.

    Example:
        >>> server = ChainServer(port=0)                       # doctest: +SKIP
        >>> server.start(); print(server.url); server.stop()
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8545):
        self.w3 = Web3(embedded_provider())
        provider: EmbeddedProvider = self.w3.provider  # type: ignore[assignment]
        self._request: Callable[..., Any] = provider.request_func(self.w3, self.w3.middleware_onion)
        self._lock = threading.Lock()
        self._memo: dict[tuple[str, int, str], dict[str, Any]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            # keep-alive: a node's requests reuse one connection (and one server thread)
            # instead of opening a TCP connection and starting a thread per request
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body wait on a delayed ACK

            def setup(self) -> None:
                super().setup()
                with server.httpd.connections_lock:
                    server.httpd.connections.add(self.connection)

            def finish(self) -> None:
                with server.httpd.connections_lock:
                    server.httpd.connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > _MAX_REQUEST:
                    self.send_error(413, "request too large")
                    return
                try:
                    request = json.loads(self.rfile.read(length))
                except ValueError:
                    reply: Any = _error(None, -32700, "parse error")
                else:
                    if isinstance(request, list):
                        reply = [server.dispatch(r) for r in request]
                    else:
                        reply = server.dispatch(request)
                body = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("%s " + format, self.address_string(), *args)

        self.httpd = _Server((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The JSON-RPC URL, e.g. ``http://127.0.0.1:8545``."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def dispatch(self, request: Any) -> dict[str, Any]:
        """Answer one JSON-RPC request object."""
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return _error(None, -32600, "invalid request")
        rid = request.get("id")
        method: str = request["method"]
        params = request.get("params") or []
        try:
            with self._lock:  # eth-tester is not thread-safe
                response = self._answer(method, params)
        except Exception as e:  # an answer, never a dead server
            logger.debug("%s failed: %s", method, e)
            return _error(rid, -32000, str(e))
        if "error" in response:
            return {"jsonrpc": "2.0", "id": rid, "error": response["error"]}
        return {"jsonrpc": "2.0", "id": rid, "result": to_wire(response.get("result"))}

    def _answer(self, method: str, params: Any) -> dict[str, Any]:
        """Run one request on the chain, or answer a repeated read from the memo.

        The memo is part of this development server only (real chains and anvil
        answer for themselves); it is keyed by the wall-clock second.

        Nodes waiting for a round read the same view at the same block, several
        times each; on py-evm every run of the contract costs milliseconds of this
        process's CPU, which the nodes training beside it on the same machine lose.
        An answer depends only on the chain's state, which only the requests
        outside ``_READ_ONLY`` change (they empty the memo), and on the pending
        block's timestamp, which is moved up to the wall clock before each call
        and so stays the same within one second of it: the memo is keyed by that
        second, read before the call. Called with the lock held.
        """
        key = None
        if method in _MEMO_METHODS:
            key = (method, int(time.time()), json.dumps(params, sort_keys=True))
            known = self._memo.get(key)
            if known is not None:
                return known
        response: dict[str, Any] = self._request(method, params)
        if method not in _READ_ONLY:
            self._memo.clear()
        elif key is not None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = response
        return response

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="swarmlib-chain", daemon=True
        )
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self.httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving: close the listening socket and every connection kept alive."""
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.httpd.connections_lock:
            open_connections = list(self.httpd.connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):  # closed by the client meanwhile
                conn.shutdown(socket.SHUT_RDWR)


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}
