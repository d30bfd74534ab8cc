// llama.cpp's speed on a GGUF, measured as `catq bench` measures catq (bench/vs_llamacpp.sh): pp = PROMPT random
// tokens evaluated as one batch from an empty context, tg = GEN tokens generated greedily one at a time from an empty
// context; one warm-up, then REPS timed runs. npm node-llama-cpp (prebuilt CPU llama.cpp, no GPU).
// Usage: node llama_cpp_bench.mjs MODEL.gguf PROMPT GEN THREADS REPS   Prints one JSON object.
// CATQ_PEERS: the folder whose node_modules holds node-llama-cpp (scripts/setup.sh installs it in .cache/peers).
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const peers = process.env.CATQ_PEERS;
if (!peers) throw new Error("CATQ_PEERS is not set");
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(join(peers, "node_modules/node-llama-cpp/dist/index.js")).href);

const [modelPath, promptArg, genArg, threadsArg, repsArg] = process.argv.slice(2);
const prompt = Number(promptArg), gen = Number(genArg), threads = Number(threadsArg), reps = Number(repsArg ?? 3);

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({
  contextSize: Math.max(prompt, gen) + 8, batchSize: Math.max(prompt, 1), sequences: 1, threads,
});
const seq = context.getSequence();
const vocab = model.fileInsights?.vocabularySize ?? model.fileInfo?.metadata?.llama?.vocab_size ?? 256;
let seed = 1;
const rand = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed; };
const tokens = Array.from({ length: Math.max(prompt, 1) }, () => 1 + (rand() % Math.max(1, vocab - 1)));

async function pp() {
  await seq.clearHistory();
  const t0 = process.hrtime.bigint();
  await seq.evaluateWithoutGeneratingNewTokens(tokens.slice(0, prompt));
  return prompt / (Number(process.hrtime.bigint() - t0) / 1e9);
}
async function tg() {
  await seq.clearHistory();
  let n = 0;
  const t0 = process.hrtime.bigint();
  for await (const t of seq.evaluate([tokens[0]], { temperature: 0 })) {
    void t;
    if (++n >= gen) break;
  }
  return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}
const out = { model: modelPath, threads, prompt, gen, pp: [], tg: [] };
if (prompt > 0) { await pp(); for (let i = 0; i < reps; ++i) out.pp.push(await pp()); }
if (gen > 0) { await tg(); for (let i = 0; i < reps; ++i) out.tg.push(await tg()); }
const mean = (a) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : null);
out.pp_tokens_per_s = mean(out.pp);
out.tg_tokens_per_s = mean(out.tg);
console.log(JSON.stringify(out));
await context.dispose();
await model.dispose();
