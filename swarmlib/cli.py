"""The ``swarmlib`` command.

    swarmlib chain serve [--port P]                       dev chain on 127.0.0.1
    swarmlib chain deploy --rpc URL --key FILE            deploy SwarmLedger
    swarmlib member add|remove --rpc URL --contract ADDR --key FILE --address 0x… [--spiffe-id …]
    swarmlib session create --rpc URL --contract ADDR --key FILE --name S --min-peers N
    swarmlib audit --rpc URL --contract ADDR [--session S] [--verify DIR …]
    swarmlib identity init-ca --trust-domain TD --out DIR  a dev CA (ca.pem, ca-key.pem)
    swarmlib identity issue --ca DIR --spiffe-id spiffe://TD/... --out DIR
    swarmlib run -n N [--workdir DIR] SCRIPT [ARGS…]      a local swarm of N processes
    swarmlib strategies                                   the merge strategies

A key FILE holds a hex private key, or an encrypted keystore (JSON) whose
passphrase is in the ``SWARMLIB_KEY_PASSPHRASE`` environment variable. Errors
print one line (what went wrong and what to do) and exit with status 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarmlib import __version__
from swarmlib.errors import ConfigurationError, SwarmError
from swarmlib.merge import STRATEGIES

if TYPE_CHECKING:  # web3 takes a second to import: only the commands that need it do
    from eth_account.signers.local import LocalAccount

    from swarmlib.ledger import LedgerClient

__all__ = ["build_parser", "load_key", "main"]

logger = logging.getLogger(__name__)


def load_key(path: str | Path) -> LocalAccount:
    """The signing account in a key file (passphrase from ``SWARMLIB_KEY_PASSPHRASE``)."""
    from swarmlib.ledger.keys import load_account

    return load_account(path, os.environ.get("SWARMLIB_KEY_PASSPHRASE"))


def _client(args: argparse.Namespace, *, signed: bool) -> LedgerClient:
    from swarmlib.ledger import LedgerClient, connect

    w3 = connect(args.rpc, expected_chain_id=args.chain_id)
    account = load_key(args.key) if signed else None
    return LedgerClient(w3, args.contract, account, rpc=args.rpc)


def _identity(args: argparse.Namespace) -> int:
    from swarmlib.identity.devca import DevCA

    if args.action == "init-ca":
        if not args.trust_domain:
            raise ConfigurationError(
                "`identity init-ca` needs --trust-domain, e.g. hospital-a.example."
            )
        ca = DevCA.create(args.trust_domain, days=args.days)
        folder = ca.save(args.out)
        print(
            f"dev CA for trust domain {ca.trust_domain}: {folder}/ca.pem (bundle), "
            f"{folder}/ca-key.pem (0600)"
        )
        return 0
    if not args.ca or not args.spiffe_id:
        raise ConfigurationError(
            "`identity issue` needs --ca DIR and --spiffe-id spiffe://TD/path."
        )
    issued = DevCA.load(args.ca).issue_files(args.spiffe_id, args.out, hours=args.hours)
    print(f"SVID for {issued.spiffe_id}: {issued.cert}, {issued.key} (0600), {issued.bundle}")
    return 0


def _rule_args(parser: argparse.ArgumentParser, whose: str) -> None:
    parser.add_argument(
        "--secure-aggregation",
        action="store_true",
        help=f"owners see only sums ({whose}; SWARMLIB_SECURE_AGGREGATION)",
    )
    parser.add_argument(
        "--privacy",
        metavar="JSON",
        help=f"differential privacy ({whose}; SWARMLIB_PRIVACY), e.g. "
        '\'{"clip_norm": 1, "noise_multiplier": 1.1, "target_epsilon": 8}\'',
    )
    parser.add_argument(
        "--owner-replicas",
        type=int,
        metavar="R",
        help=f"nodes that merge each shard; 3 outvotes one wrong merge ({whose}; "
        "SWARMLIB_OWNER_REPLICAS)",
    )


def _run(args: argparse.Namespace) -> int:
    from swarmlib.launcher import run_script

    return run_script(
        args.nodes,
        args.script,
        args.args,
        workdir=args.workdir,
        min_peers=args.min_peers,
        merge=args.merge,
        quorum_wait=args.quorum_wait,
        timeout=args.timeout,
        keep_going=args.keep_going,
        rpc=args.rpc,
        admin_key=Path(args.admin_key).read_text().strip() if args.admin_key else None,
        extra_env=_rule_env(args),
    )


def _rule_env(args: argparse.Namespace) -> dict[str, str]:
    """``SWARMLIB_*`` variables for the session-rule flags (``--secure-aggregation`` ...)."""
    env = {"SWARMLIB_SECURE_AGGREGATION": "1"} if args.secure_aggregation else {}
    if args.privacy:
        _privacy(args.privacy)  # a bad value fails here, not in every node
        env["SWARMLIB_PRIVACY"] = args.privacy
    if args.owner_replicas is not None:
        from swarmlib.transport.replicas import check_replicas

        check_replicas(args.owner_replicas, args.owner_replicas)  # a bad value fails here
        env["SWARMLIB_OWNER_REPLICAS"] = str(args.owner_replicas)
    return env


def _privacy(raw: str | None) -> Any:
    from swarmlib.node.config import _parse

    return None if not raw else _parse("--privacy", raw, "GaussianDP")


def _strategies(_: argparse.Namespace) -> int:
    seen: dict[type, list[str]] = {}
    for name, cls in STRATEGIES.items():
        seen.setdefault(cls, []).append(name)
    for cls, names in seen.items():
        exact = "exact" if cls.exact_when_sharded else "equal up to rounding"
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{names[0]:<18} {', '.join(names[1:]) or '-':<18} sharded: {exact:<21} {doc}")
    return 0


def _chain_serve(args: argparse.Namespace) -> int:
    from swarmlib.ledger.chain import DEV_KEYS, dev_accounts
    from swarmlib.ledger.server import ChainServer

    server = ChainServer(args.host, args.port)
    chain_id = server.w3.eth.chain_id
    print(
        f"swarmlib dev chain (embedded py-evm, DEVELOPMENT ONLY) at {server.url}, "
        f"chain id {chain_id}"
    )
    if args.write_keys:
        folder = Path(args.write_keys)
        folder.mkdir(parents=True, exist_ok=True)
        for i, key in enumerate(DEV_KEYS):
            path = folder / f"dev-{i}.key"
            path.write_text(key + "\n")
            path.chmod(0o600)
        print(f"wrote the funded dev keys to {folder}/dev-0.key … dev-{len(DEV_KEYS) - 1}.key")
    for i, acct in enumerate(dev_accounts()):
        print(f"  dev account {i}: {acct.address}")
    print("Ctrl-C stops it.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


def _chain_deploy(args: argparse.Namespace) -> int:
    from swarmlib.ledger import LedgerClient, connect

    w3 = connect(args.rpc, expected_chain_id=args.chain_id)
    client = LedgerClient.deploy(w3, load_key(args.key), rpc=args.rpc)
    print(client.address)
    return 0


def _member(args: argparse.Namespace) -> int:
    client = _client(args, signed=True)
    if args.action == "add":
        if not args.spiffe_id:
            raise ConfigurationError(
                "`member add` needs --spiffe-id spiffe://<trust-domain>/<path>."
            )
        receipt = client.add_member(args.address, args.spiffe_id)
        print(f"added {args.address} as {args.spiffe_id} (gas {receipt['gasUsed']})")
    else:
        receipt = client.remove_member(args.address)
        print(f"removed {args.address} (gas {receipt['gasUsed']})")
    return 0


def _session_create(args: argparse.Namespace) -> int:
    from swarmlib.ledger import SessionRules
    from swarmlib.merge import get_strategy
    from swarmlib.node.rules import check_feasible

    merge = get_strategy(args.merge).spec
    wanted = None
    if args.min_peers:
        wanted = SessionRules(
            args.min_peers, merge, bool(args.secure_aggregation), _privacy(args.privacy),
            args.owner_replicas or 1,
        )  # fmt: skip
        check_feasible(wanted, args.name)
    elif args.secure_aggregation or args.privacy or args.owner_replicas:
        raise ConfigurationError(
            "--secure-aggregation, --privacy and --owner-replicas need --min-peers."
        )
    client = _client(args, signed=True)
    client.create_session(
        args.name,
        rules=wanted,
        quorum_wait=args.quorum_wait,
        round_timeout=args.round_timeout,
    )
    rules = str(wanted) if wanted else "rules to be fixed by the first node to join"
    print(
        f"created session {args.name!r}: {rules}, "
        f"quorum_wait={args.quorum_wait}s, round_timeout={args.round_timeout}s"
    )
    return 0


def _audit(args: argparse.Namespace) -> int:
    from swarmlib.ledger.audit import audit, format_audit

    client = _client(args, signed=False)
    names = [args.session] if args.session else _session_names(client)
    mismatch = False
    for name in names:
        rows = audit(client, name)
        mismatch |= any(r.status == "MISMATCH" for r in rows)
        rules = client.session_rules(name)
        print(f"session {name!r} rules: {rules if rules else 'not fixed yet'}")
        print(format_audit(rows, name))
        if args.verify:
            from swarmlib.node.disclose import format_verdicts, load_disclosed, verify

            verdicts = verify(rows, rules, load_disclosed(args.verify, name))
            print(f"verifying session {name!r} from the contributions in "
                  f"{', '.join(args.verify)}:")  # fmt: skip
            print(format_verdicts(verdicts, name))
            mismatch |= any(v.ok is False for v in verdicts)
    return 3 if mismatch else 0


def _session_names(client: LedgerClient) -> list[str]:
    return client.session_names()


def chain_args(p: argparse.ArgumentParser, *, key: bool, contract: bool = True) -> None:
    p.add_argument("--rpc", default="http://127.0.0.1:8545", help="JSON-RPC URL")
    p.add_argument("--chain-id", type=int, help="refuse a chain with another id")
    if contract:
        p.add_argument("--contract", required=True, help="SwarmLedger address")
    if key:
        p.add_argument("--key", required=True, help="file with the signing key")


def _add_run(sub: Any) -> None:
    """The `swarmlib run` command."""
    run = sub.add_parser(
        "run", help="run SCRIPT as N swarm nodes on this machine (dev chain, dev CA)"
    )
    run.add_argument("-n", "--nodes", type=int, required=True)
    run.add_argument("--workdir", help="keys, SVIDs and outputs (default: a new temporary folder)")
    run.add_argument(
        "--min-peers",
        type=int,
        help="min_peers of nodes that set none (SWARMLIB_MIN_PEERS; default N)",
    )
    run.add_argument("--merge", help="merge of nodes that set none (SWARMLIB_MERGE; default mean)")
    _rule_args(run, "of nodes that set none")
    run.add_argument("--quorum-wait", type=int, default=10, help="seconds (default 10)")
    run.add_argument("--timeout", type=float, help="stop every node after this many seconds")
    run.add_argument(
        "--keep-going", action="store_true", help="let the others run when a node fails"
    )
    run.add_argument(
        "--rpc", help="a development chain to use instead of the embedded one, e.g. anvil"
    )
    run.add_argument(
        "--admin-key",
        help="with --rpc: file with the hex key of a funded account there (deploys, pays nodes)",
    )
    run.add_argument("script")
    run.add_argument("args", nargs=argparse.REMAINDER)
    run.set_defaults(func=_run)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``swarmlib``."""
    parser = argparse.ArgumentParser(
        prog="swarmlib",
        description="Swarm Learning for Keras: peer to peer, no central server.",
    )
    parser.add_argument("--version", action="version", version=f"swarmlib {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_run(sub)

    strategies = sub.add_parser("strategies", help="list the merge strategies and their names")
    strategies.set_defaults(func=_strategies)

    identity = sub.add_parser("identity", help="a dev CA and SVIDs (SPIRE does this in production)")
    identity.add_argument("action", choices=["init-ca", "issue"])
    identity.add_argument("--trust-domain", help="for init-ca, e.g. hospital-a.example")
    identity.add_argument("--ca", help="for issue: the folder init-ca wrote")
    identity.add_argument("--spiffe-id", help="for issue: spiffe://<trust-domain>/<path>")
    identity.add_argument("--out", required=True, help="folder to write to")
    identity.add_argument("--days", type=int, default=365, help="CA lifetime (default 365)")
    identity.add_argument("--hours", type=float, default=24.0, help="SVID lifetime (default 24)")
    identity.set_defaults(func=_identity)

    chain = sub.add_parser("chain", help="serve a dev chain, deploy the contract")
    chain_sub = chain.add_subparsers(dest="chain_command", metavar="ACTION", required=True)
    serve = chain_sub.add_parser("serve", help="serve the embedded chain on 127.0.0.1 (dev only)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8545)
    serve.add_argument("--write-keys", metavar="DIR", help="write the funded dev keys here")
    serve.set_defaults(func=_chain_serve)
    deploy = chain_sub.add_parser("deploy", help="deploy SwarmLedger; prints its address")
    chain_args(deploy, key=True, contract=False)
    deploy.set_defaults(func=_chain_deploy)

    member = sub.add_parser("member", help="add or remove a member (admins)")
    member.add_argument("action", choices=["add", "remove"])
    chain_args(member, key=True)
    member.add_argument("--address", required=True, help="the member's Ethereum address")
    member.add_argument("--spiffe-id", help="spiffe://<trust-domain>/<path> (for add)")
    member.set_defaults(func=_member)

    session = sub.add_parser("session", help="create a training session (admins)")
    session.add_argument("action", choices=["create"])
    chain_args(session, key=True)
    session.add_argument("--name", required=True)
    session.add_argument(
        "--min-peers", type=int, help="fix the rules now (default: the first node fixes them)"
    )
    session.add_argument("--merge", default="mean", help="with --min-peers (default mean)")
    _rule_args(session, "with --min-peers")
    session.add_argument("--quorum-wait", type=int, default=30, help="seconds (default 30)")
    session.add_argument("--round-timeout", type=int, default=600, help="seconds (default 600)")
    session.set_defaults(func=_session_create)

    aud = sub.add_parser("audit", help="per round: participants, samples, merged-hash agreement")
    chain_args(aud, key=False)
    aud.add_argument("--session", help="one session (default: all)")
    aud.add_argument(
        "--verify", action="append", metavar="DIR",
        help="check contributions disclosed in DIR (keep_contributions) against the round "
        "receipts and re-compute each round whose every contribution is there; repeatable",
    )  # fmt: skip
    aud.set_defaults(func=_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``swarmlib`` command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        return int(args.func(args))
    except SwarmError as e:
        print(f"swarmlib: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
