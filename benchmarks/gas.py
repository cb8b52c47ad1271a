"""Gas used by each SwarmLedger call, measured on the embedded chain (py-evm, EVM cancun).

Runs a small swarm (admin + N members, three rounds, one retried attempt) and
prints a markdown table: call, gas used (min-max over the calls made). Gas does
not depend on the chain's speed, so one run is the figure; it changes only with
the contract or the EVM version.

    python benchmarks/gas.py [--members 4]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from swarmlib.ledger import LedgerClient, SessionRules, connect, dev_accounts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=4)
    args = parser.parse_args(argv)
    gas: dict[str, list[int]] = defaultdict(list)
    w3 = connect("embedded")
    accounts = dev_accounts()
    admin = LedgerClient.deploy(w3, accounts[0])
    deploy_tx = w3.eth.get_transaction_receipt(
        w3.eth.get_block(1, full_transactions=True)["transactions"][0]["hash"]
    )
    gas["deploy"].append(deploy_tx["gasUsed"])
    nodes = [LedgerClient(w3, admin.address, a) for a in accounts[1 : args.members + 1]]
    for i, n in enumerate(nodes):
        gas["addMember"].append(
            admin.add_member(n.account.address, f"spiffe://hospital-{i}.example/swarm/node")[  # type: ignore[union-attr]
                "gasUsed"
            ]
        )
        gas["register"].append(
            n.register(f"tcp://10.0.0.{i + 1}:7100", bytes([i + 1]) * 32, bytes([i + 7]) * 32)[
                "gasUsed"
            ]
        )
    gas["createSession (with rules)"].append(
        admin.create_session("train", min_peers=2, merge="mean", quorum_wait=600)["gasUsed"]
    )
    gas["createSession (rules left to the nodes)"].append(
        admin.create_session("open", quorum_wait=600)["gasUsed"]
    )
    rules = SessionRules(2, "coordinate_median")
    gas["fixRules (the first node to join)"].append(nodes[0].fix_rules("open", rules)["gasUsed"])
    last_hash = b"\0" * 32
    for r in range(3):
        for k, n in enumerate(nodes):
            used = n.ready("train", r, 0, 1000, last_hash)["gasUsed"]
            label = (
                "first vote (opens the round)"
                if k == 0
                else "last vote (closes the round)"
                if k == len(nodes) - 1
                else "other votes"
            )
            gas[f"ready: {label}"].append(used)
        last_hash = bytes([r + 1]) * 32
    for n in nodes[:2]:  # attempt 0 of round 2 failed in the exchange: retry without the rest
        n.ready("train", 2, 1, 1000, last_hash)
    gas["askToClose (a voter's own quorum wait passed)"] = [
        nodes[0].ask_to_close("train", 2, 1)["gasUsed"]
    ]
    w3.provider.ethereum_tester.time_travel(  # type: ignore[attr-defined]
        w3.eth.get_block("pending")["timestamp"] + 601
    )
    gas["closeRound (after the quorum wait)"] = [nodes[0].close_round("train", 2, 1)["gasUsed"]]
    gas["receipt (each node, after each merged round)"] = [
        node.receipt("train", 1, 0, b"\x05" * 32, b"\x06" * 32)["gasUsed"] for node in nodes
    ]
    gas["report (an outvoted owner, by a voter of a closed round)"] = [
        nodes[0].report("train", 1, 0, nodes[1].account.address, b"\x07" * 32)["gasUsed"]  # type: ignore[union-attr]
    ]
    gas["removeMember"].append(admin.remove_member(nodes[-1].account.address)["gasUsed"])  # type: ignore[union-attr]
    print(f"| call | gas used (min-max over {args.members} members) |\n|---|---|")
    for name, values in gas.items():
        lo, hi = min(values), max(values)
        print(f"| `{name}` | {lo:,}" + (f" - {hi:,}" if hi != lo else "") + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
