"""A deployed SwarmLedger on the embedded chain with an admin and members, for ledger tests."""

from __future__ import annotations

from web3 import Web3

from swarmlib.ledger import LedgerClient, connect, dev_accounts

H = [bytes([i]) * 32 for i in range(8)]  # stand-ins for merged-model hashes


class Swarm:
    """A deployed ledger with an admin and three registered members; ``nodes[3]`` is not one."""

    def __init__(self) -> None:
        self.w3: Web3 = connect("embedded")
        accounts = dev_accounts()
        self.admin = LedgerClient.deploy(self.w3, accounts[0])
        self.nodes = [LedgerClient(self.w3, self.admin.address, a) for a in accounts[1:5]]
        for i, node in enumerate(self.nodes[:3]):
            self.add(i)
            node.register(f"tcp://127.0.0.1:{7000}", b"\x01" * 32, b"\x02" * 32)
        self.outsider = LedgerClient(self.w3, self.admin.address, accounts[6])

    def add(self, i: int) -> None:
        self.admin.add_member(self.addr(i), f"spiffe://swarm.test/node-{i}")

    def addr(self, i: int) -> str:
        return self.nodes[i].account.address  # type: ignore[union-attr]

    def travel(self, seconds: int) -> None:
        tester = self.w3.provider.ethereum_tester  # type: ignore[attr-defined]
        now = tester.get_block_by_number("pending")["timestamp"]
        tester.time_travel(now + seconds)
