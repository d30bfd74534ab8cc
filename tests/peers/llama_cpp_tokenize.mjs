// Drives llama.cpp's tokenizer (npm node-llama-cpp, prebuilt CPU binary) on a GGUF written by catq, for the tests
// PeerLlamaCppTokenizer.*: loads only the vocabulary and tokenizes each text twice, without and with special-token
// parsing (llama.cpp's parse_special; no BOS/EOS added), and detokenizes the plain ids.
// Usage: node llama_cpp_tokenize.mjs MODEL.gguf TEXTS.json      TEXTS.json: ["text", ...] (UTF-8)
// Prints one JSON object: {"plain": [[id, ...], ...], "special": [[...], ...], "detok": ["...", ...], "bos": id|null,
// "eos": id|null}. CATQ_PEERS: the folder whose node_modules holds node-llama-cpp.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const peers = process.env.CATQ_PEERS;
if (!peers) throw new Error("CATQ_PEERS is not set");
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(join(peers, "node_modules/node-llama-cpp/dist/index.js")).href);

const [modelPath, textsPath] = process.argv.slice(2);
const texts = JSON.parse(readFileSync(textsPath, "utf8"));

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath, vocabOnly: true });
const plain = [], special = [], detok = [];
for (const t of texts) {
  const p = Array.from(model.tokenize(t, false));
  plain.push(p);
  special.push(Array.from(model.tokenize(t, true)));
  detok.push(model.detokenize(p, false));
}
console.log(JSON.stringify({ plain, special, detok, bos: model.tokens.bos ?? null, eos: model.tokens.eos ?? null }));
await model.dispose();
