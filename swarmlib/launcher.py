"""``swarmlib run -n N SCRIPT``: a whole local swarm from one command, for development and demos.

It makes a working folder with a dev CA and one SVID per node, serves the
embedded chain on 127.0.0.1 (in this process), deploys the contract, adds N
members and a training session, then starts N processes of ``SCRIPT`` with
their ``SWARMLIB_*`` environment (``SWARMLIB_NODE_INDEX`` 0..N-1 and
``SWARMLIB_NODE_COUNT`` let one script pick its own data partition). Output is
prefixed per node. If any node fails the others are stopped and the exit code
is non-zero; Ctrl-C stops everything. Every process is ended by its pid.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from eth_account import Account

from swarmlib._files import write_private
from swarmlib.errors import ConfigurationError, NodeProcessFailed
from swarmlib.identity.devca import DevCA
from swarmlib.ledger import LedgerClient, connect, dev_accounts
from swarmlib.ledger.server import ChainServer

__all__ = ["LocalSwarm", "run_nodes", "run_script"]

logger = logging.getLogger(__name__)

TRUST_DOMAIN = "swarm.local"
MAX_NODES = 64  # processes on one machine; each holds a TensorFlow runtime
_NODE_FUNDS = 10**20  # wei for a node without a dev account: 100 ether, far more than it spends
_NODE_NICENESS = 10  # node processes run at a lower priority than the chain they share
_RESULT = "result.pkl"  # where a run_nodes child leaves fn's result for its parent
T = TypeVar("T")


@dataclass
class LocalSwarm:
    """A dev chain, contract, session and N node identities on this machine.

    Args:
        nodes: Number of nodes (1 to 64). The first nine use the dev chain's funded
            accounts; later ones get fresh keys, funded by the admin account.
        workdir: Folder for keys, SVIDs and outputs. Defaults to a new temporary one.
        session: Session name. Defaults to ``"swarm"``.
        min_peers: ``SWARMLIB_MIN_PEERS`` for every node: the ``min_peers`` of a
            node that sets none itself. The session is created without rules, so
            the first node to join fixes them from its settings. Defaults to ``nodes``.
        merge: ``SWARMLIB_MERGE`` for every node, likewise. Defaults to none
            (the nodes' own, else ``"mean"``).
        quorum_wait: Seconds after which a round may close without everyone. Defaults to 10.
        round_timeout: Seconds a node waits for a round. Defaults to 300.
        rpc: JSON-RPC URL of a development chain to use instead of serving the
            embedded one (anvil, a geth or Besu dev network). Defaults to ``None``:
            serve the embedded chain on 127.0.0.1 in this process.
        admin_key: With ``rpc``: the hex private key of a funded account on that
            chain. It deploys the contract, becomes its admin and funds a fresh
            account for every node. Required with ``rpc``.
    """

    nodes: int
    workdir: Path | None = None
    session: str = "swarm"
    min_peers: int | None = None
    merge: str | None = None
    quorum_wait: int = 10
    round_timeout: int = 300
    rpc: str | None = None
    admin_key: str | None = field(default=None, repr=False)
    envs: list[dict[str, str]] = field(default_factory=list)

    def start(self) -> LocalSwarm:
        """Serve the chain, deploy, and prepare every node's identity and environment."""
        if not 1 <= self.nodes <= MAX_NODES:
            raise ConfigurationError(f"-n must be between 1 and {MAX_NODES} (got {self.nodes}).")
        self.workdir = Path(self.workdir or tempfile.mkdtemp(prefix="swarmlib-run-"))
        self.server: ChainServer | None = None
        if self.rpc is None:
            self.server = ChainServer(port=0)
            self.server.start()
            self.url = self.server.url
            accounts = dev_accounts()  # the embedded chain funds these
        elif self.admin_key is None:
            raise ConfigurationError(
                f"A local swarm on {self.rpc} needs the key of a funded account on it to deploy "
                "the contract and fund the nodes: pass admin_key (swarmlib run --admin-key FILE)."
            )
        else:
            self.url = self.rpc
            accounts = [Account.from_key(self.admin_key)]  # nodes get fresh, funded keys
        self.admin = LedgerClient.deploy(connect(self.url), accounts[0], rpc=self.url)
        # no rules: the first node to join fixes min_peers and merge from its own settings
        self.admin.create_session(
            self.session, quorum_wait=self.quorum_wait, round_timeout=self.round_timeout
        )
        ca = DevCA.create(TRUST_DOMAIN)
        ca.save(self.workdir / "ca")
        for i in range(self.nodes):
            folder = self.workdir / f"node-{i}"
            issued = ca.issue_files(f"spiffe://{TRUST_DOMAIN}/node-{i}", folder)
            if i + 1 < len(accounts):
                account = accounts[i + 1]
            else:  # beyond the chain's own funded accounts
                account = Account.create()
                self.admin.fund(account.address, _NODE_FUNDS)
            key = folder / "eth.key"
            write_private(key, (account.key.hex() + "\n").encode())
            self.admin.add_member(account.address, issued.spiffe_id)
            self.envs.append(
                {
                    "SWARMLIB_RPC": self.url,
                    "SWARMLIB_CONTRACT": self.admin.address,
                    "SWARMLIB_SESSION": self.session,
                    "SWARMLIB_KEY_FILE": str(key),
                    "SWARMLIB_SVID_CERT": str(issued.cert),
                    "SWARMLIB_SVID_KEY": str(issued.key),
                    "SWARMLIB_TRUST_BUNDLE": str(issued.bundle),
                    "SWARMLIB_NODE_INDEX": str(i),
                    "SWARMLIB_NODE_COUNT": str(self.nodes),
                    "SWARMLIB_MIN_PEERS": str(self.min_peers or self.nodes),
                    **({"SWARMLIB_MERGE": self.merge} if self.merge else {}),
                    "SWARMLIB_WORKDIR": str(self.workdir),
                }
            )
        logger.info("local swarm of %d nodes ready in %s", self.nodes, self.workdir)
        return self

    def stop(self) -> None:
        """Stop serving the chain (a chain given as ``rpc`` is left running)."""
        server: ChainServer | None = getattr(self, "server", None)
        if server is not None:
            server.stop()

    def __enter__(self) -> LocalSwarm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _lower_priority() -> None:
    """In a node's child process before it starts: yield the CPU to the launcher's chain."""
    os.nice(_NODE_NICENESS)


def _pump(stream: IO[bytes], prefix: str, out: IO[str]) -> None:
    for raw in iter(stream.readline, b""):
        out.write(f"{prefix}{raw.decode(errors='replace')}")
        out.flush()


def run_script(
    nodes: int,
    script: str,
    args: Sequence[str] = (),
    *,
    workdir: str | Path | None = None,
    min_peers: int | None = None,
    merge: str | None = None,
    quorum_wait: int = 10,
    timeout: float | None = None,
    extra_env: dict[str, str] | None = None,
    on_finish: Callable[[LocalSwarm], None] | None = None,
    keep_going: bool = False,
    rpc: str | None = None,
    admin_key: str | None = None,
) -> int:
    """Run ``python SCRIPT ARGS`` as ``nodes`` swarm nodes; returns the exit code.

    Args:
        min_peers: The nodes' default ``min_peers`` (see :class:`LocalSwarm`).
        merge: The nodes' default merge strategy (see :class:`LocalSwarm`).
        rpc: A development chain to use instead of the embedded one (see
            :class:`LocalSwarm`). Defaults to serving the embedded chain.
        admin_key: With ``rpc``: the hex key of a funded account on it.
        timeout: Seconds before every node is stopped. Defaults to no limit.
        extra_env: More environment variables for every node.
        on_finish: Called with the swarm after the nodes stopped, while its chain
            still runs (e.g. to audit it).
        keep_going: Let the other nodes run on when one fails (the exit code is
            still non-zero). Defaults to stopping them all.

    Returns:
        0 if every node exited 0, else the first non-zero exit code (or 1).
    """
    if not Path(script).exists():
        raise ConfigurationError(f"No script {script!r}.")
    return _launch(nodes, [sys.executable, script, *args], workdir=workdir, min_peers=min_peers,
                   merge=merge, quorum_wait=quorum_wait, timeout=timeout, extra_env=extra_env,
                   on_finish=on_finish, keep_going=keep_going, rpc=rpc,
                   admin_key=admin_key)  # fmt: skip


def run_nodes(
    fn: Callable[[], T],
    nodes: int,
    *,
    workdir: str | Path | None = None,
    min_peers: int | None = None,
    quorum_wait: int = 10,
    timeout: float | None = None,
    extra_env: dict[str, str] | None = None,
    rpc: str | None = None,
    admin_key: str | None = None,
) -> list[T]:
    """Run ``fn()`` as ``nodes`` swarm nodes, each in its own process; returns their results.

    The entry point for notebooks: define a function that builds a model, picks
    its data partition from ``SWARMLIB_NODE_INDEX`` and trains with
    :class:`~swarmlib.SwarmCallback`, then return what you want to look at (its
    history, its weights)::

        def train():
            index = int(os.environ["SWARMLIB_NODE_INDEX"])
            ...
            model.fit(x[index::3], y[index::3], callbacks=[SwarmCallback(8, 3)])
            return model.get_weights()

        weights = run_nodes(train, 3)     # one entry per node, in node order

    The swarm is set up as by ``swarmlib run`` (dev CA, chain on 127.0.0.1 or
    the development chain at ``rpc`` with ``admin_key``, contract, session);
    each node's output is shown prefixed ``[node-i]``.
    ``fn`` goes to the processes with cloudpickle, so functions defined in a
    notebook work; it must import what it uses (Keras, numpy) or find it in the
    notebook's globals. Results come back the same way, from these local child
    processes only (never from a peer).

    Raises:
        NodeProcessFailed: a node's process failed or was stopped; the message
            has the end of its traceback. The other nodes are stopped.
    """
    import cloudpickle

    payload_dir = Path(tempfile.mkdtemp(prefix="swarmlib-fn-"))
    payload = payload_dir / "fn.pkl"
    write_private(payload, cloudpickle.dumps(fn))
    results: list[Any] = []
    failures: list[str] = []

    def collect(swarm: LocalSwarm) -> None:
        assert swarm.workdir is not None
        _collect(swarm.workdir, nodes, results, failures)

    try:
        code = _launch(nodes, [sys.executable, "-m", "swarmlib._entry", str(payload)],
                       workdir=workdir, min_peers=min_peers, quorum_wait=quorum_wait,
                       timeout=timeout, extra_env=extra_env, on_finish=collect,
                       rpc=rpc, admin_key=admin_key)  # fmt: skip
    finally:
        payload.unlink(missing_ok=True)
        payload_dir.rmdir()
    if code != 0 or failures:
        raise NodeProcessFailed(
            f"The local swarm failed (exit code {code}): " + "; ".join(failures or ["stopped"])
        )
    return results


def _collect(workdir: Path, nodes: int, results: list[Any], failures: list[str]) -> None:
    """What each ``run_nodes`` child left in its folder: its result, or why it failed."""
    for i in range(nodes):
        out = workdir / f"node-{i}" / _RESULT
        if not out.exists():
            failures.append(f"node-{i} returned nothing")
            continue
        status, value = pickle.loads(out.read_bytes())  # written by our own child
        if status == "ok":
            results.append(value)
        else:
            failures.append(f"node-{i}: {value}")


def _launch(
    nodes: int,
    command: list[str],
    *,
    workdir: str | Path | None,
    min_peers: int | None,
    quorum_wait: int,
    merge: str | None = None,
    timeout: float | None,
    extra_env: dict[str, str] | None,
    on_finish: Callable[[LocalSwarm], None] | None,
    keep_going: bool = False,
    rpc: str | None = None,
    admin_key: str | None = None,
) -> int:
    folder = Path(workdir) if workdir else None
    with LocalSwarm(nodes, folder, min_peers=min_peers, merge=merge, quorum_wait=quorum_wait,
                    rpc=rpc, admin_key=admin_key) as swarm:  # fmt: skip
        procs: list[subprocess.Popen[bytes]] = []
        pumps: list[threading.Thread] = []
        print(f"swarmlib run: {nodes} nodes, chain {swarm.url}, contract "
              f"{swarm.admin.address}, workdir {swarm.workdir}", flush=True)  # fmt: skip
        try:
            for i, env in enumerate(swarm.envs):
                proc, pump = _start_node(command, {**os.environ, **(extra_env or {}), **env}, i)
                procs.append(proc)
                pumps.append(pump)
            return _watch(procs, timeout, keep_going)
        except KeyboardInterrupt:
            print("swarmlib run: interrupted; stopping every node", flush=True)
            return 130
        finally:
            _stop(procs, pumps)
            if on_finish is not None:
                on_finish(swarm)


def _start_node(
    command: list[str], env: dict[str, str], index: int
) -> tuple[subprocess.Popen[bytes], threading.Thread]:
    """Start one node process, its output copied to ours prefixed ``[node-i]``."""
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # the chain in this process serves every node: nodes busy training must
        # not starve it (on 2 cores, 32 nodes did: its answers took over 10 s)
        preexec_fn=_lower_priority,
    )
    assert proc.stdout is not None
    pump = threading.Thread(
        target=_pump, args=(proc.stdout, f"[node-{index}] ", sys.stdout), daemon=True
    )
    pump.start()
    return proc, pump


def _watch(procs: list[subprocess.Popen[bytes]], timeout: float | None, keep_going: bool) -> int:
    """Wait for the nodes; the run's exit code (the first failure's, unless ``keep_going``)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while any(p.poll() is None for p in procs):
        failed = [p for p in procs if p.poll() not in (None, 0)]
        if failed and not keep_going:
            code = failed[0].returncode or 1
            print(f"swarmlib run: a node exited with {code}; stopping the others", flush=True)
            return code
        if deadline is not None and time.monotonic() > deadline:
            print(f"swarmlib run: stopped after {timeout:g}s", flush=True)
            return 1
        time.sleep(0.2)
    code = next((p.returncode for p in procs if p.returncode), 0)
    if code:
        print(f"swarmlib run: a node exited with {code}", flush=True)
    return code


def _stop(procs: list[subprocess.Popen[bytes]], pumps: list[threading.Thread]) -> None:
    """End every node process by its process group (SIGTERM, then SIGKILL after 10 s)."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
    for pump in pumps:
        pump.join(5)
    for p in procs:
        if p.stdout is not None:
            p.stdout.close()
