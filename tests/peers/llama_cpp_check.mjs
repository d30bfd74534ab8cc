// Drives llama.cpp (npm node-llama-cpp, prebuilt CPU binary) on a GGUF written by `catq export`, for the test
// PeerLlamaCpp.*: loads the model, scores token windows (mean next-token NLL from llama.cpp's raw logits) and
// generates greedily from BOS (timed: decode tokens per second, 1 thread). Usage: node llama_cpp_check.mjs MODEL.gguf WINDOWS.json GREEDY_STEPS
// WINDOWS.json: [[bos, t0, t1, ...], ...]  (every token after the first is scored). Prints one JSON object.
// CATQ_PEERS: the folder whose node_modules holds node-llama-cpp (scripts/setup.sh installs it in .cache/peers).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const peers = process.env.CATQ_PEERS;
if (!peers) throw new Error("CATQ_PEERS is not set");
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(join(peers, "node_modules/node-llama-cpp/dist/index.js")).href);

const [modelPath, windowsPath, stepsArg] = process.argv.slice(2);
const windows = JSON.parse(readFileSync(windowsPath, "utf8"));
const steps = Number(stepsArg ?? 0);

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath });
const ctxSize = Math.max(...windows.map((w) => w.length), steps + 1, 16);
const context = await model.createContext({ contextSize: ctxSize, sequences: 1, threads: 1 });
const seq = context.getSequence();

function logSoftmaxAt(logits, token) {
  // logits: Map<token, logit> over the whole vocabulary.
  let max = -Infinity;
  for (const v of logits.values()) if (v > max) max = v;
  let sum = 0;
  for (const v of logits.values()) sum += Math.exp(v - max);
  return logits.get(token) - max - Math.log(sum);
}

let nll = 0, count = 0;
for (const w of windows) {
  await seq.clearHistory();
  const input = w.slice(0, -1).map((t) => [t, { generateNext: { logits: true } }]);
  const out = await seq.controlledEvaluate(input);
  for (let i = 0; i + 1 < w.length; ++i) {
    nll -= logSoftmaxAt(out[i].next.logits, w[i + 1]);
    count += 1;
  }
}

const greedy = [];
let decodeSeconds = 0;
if (steps > 0) {
  await seq.clearHistory();
  const bos = model.tokens.bos;
  const t0 = process.hrtime.bigint();
  for await (const t of seq.evaluate([bos], { temperature: 0 })) {
    greedy.push(t);
    if (greedy.length >= steps) break;
  }
  decodeSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
}
console.log(JSON.stringify({
  mean_nll: count ? nll / count : null, tokens_scored: count, ppl: count ? Math.exp(nll / count) : null,
  greedy_tokens: greedy, greedy_text: model.detokenize(greedy), vocab_bos: model.tokens.bos,
  decode_tokens_per_second: decodeSeconds > 0 ? greedy.length / decodeSeconds : null,
}));
await context.dispose();
await model.dispose();
