// Compile contracts/SwarmLedger.sol with solc-js (npm `solc`, pinned in tools/package.json)
// and write the ABI + bytecode artifact that ships as package data.
//
//   node contracts/compile.mjs [--out swarmlib/ledger/SwarmLedger.json]
//
// `make contract` runs it with the solc installed in .npm/. The EVM version is pinned so that
// the embedded chain (py-evm), anvil and real networks run the same bytecode.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const EVM_VERSION = "cancun";
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const require = createRequire(join(root, ".npm", "node_modules", "x.js"));
const solc = require("solc");

const args = process.argv.slice(2);
const outIndex = args.indexOf("--out");
const out = outIndex >= 0 ? args[outIndex + 1] : join(root, "swarmlib", "ledger", "SwarmLedger.json");

const source = readFileSync(join(here, "SwarmLedger.sol"), "utf8");
const input = {
  language: "Solidity",
  sources: { "SwarmLedger.sol": { content: source } },
  settings: {
    evmVersion: EVM_VERSION,
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
const result = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (result.errors || []).filter((e) => e.severity === "error");
for (const e of result.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);
const contract = result.contracts["SwarmLedger.sol"].SwarmLedger;
const artifact = {
  contractName: "SwarmLedger",
  compiler: { name: "solc-js", version: solc.version(), evmVersion: EVM_VERSION, optimizerRuns: 200 },
  sourceSha256: createHash("sha256").update(source).digest("hex"),
  abi: contract.abi,
  bytecode: "0x" + contract.evm.bytecode.object,
  deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
};
writeFileSync(out, JSON.stringify(artifact, null, 1) + "\n");
console.log(`wrote ${out} (solc ${solc.version()}, evm ${EVM_VERSION}, ${contract.evm.bytecode.object.length / 2} bytes)`);
