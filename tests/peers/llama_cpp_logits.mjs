// Drives llama.cpp (npm node-llama-cpp, prebuilt CPU binary) for the test PeerLlamaCpp.EveryArchitectureLogitsMatch:
// loads a GGUF, evaluates one token sequence and prints llama.cpp's raw next-token logits at every position, with an
// F32 KV cache and no flash attention so that only float summation order separates them from catq's.
// Usage: node llama_cpp_logits.mjs MODEL.gguf TOKENS.json   (TOKENS.json: [t0, t1, ...]). Prints one JSON object
// {"architecture": ..., "logits": [[...vocab], ...]}. CATQ_PEERS: the folder whose node_modules holds node-llama-cpp.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const peers = process.env.CATQ_PEERS;
if (!peers) throw new Error("CATQ_PEERS is not set");
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(join(peers, "node_modules/node-llama-cpp/dist/index.js")).href);

const [modelPath, tokensPath] = process.argv.slice(2);
const tokens = JSON.parse(readFileSync(tokensPath, "utf8"));

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath, defaultContextFlashAttention: false });
const context = await model.createContext({
  contextSize: Math.max(tokens.length + 1, 16), sequences: 1, threads: 1, flashAttention: false,
  experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
});
const seq = context.getSequence();
const out = await seq.controlledEvaluate(tokens.map((t) => [t, { generateNext: { logits: true } }]));
const logits = out.map((o) => {
  const m = o.next.logits;  // Map<token, logit>
  const row = new Array(m.size);
  for (const [t, v] of m) row[t] = v;
  return row;
});
console.log(JSON.stringify({ architecture: model.fileInfo?.metadata?.general?.architecture ?? null, logits }));
await context.dispose();
await model.dispose();
