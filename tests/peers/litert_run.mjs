// Runs a .tflite model in LiteRT.js (npm @litertjs/core: Google's TFLite / LiteRT runtime compiled to WebAssembly,
// CPU through XNNPACK) under Node, for catq's TFLite checks. LiteRT.js targets browsers: the shims below give its
// loader what a page would (importScripts, fetch of the .wasm file, require for the Emscripten glue).
// Usage: node litert_run.mjs MODEL.tflite INPUT.f32 N OUT.f32
// The model must have one float32 input of batch 1 and one float32 output (LiteRT.js has no int8 tensors: catq wraps
// int8 models with QUANTIZE / DEQUANTIZE, tflite_with_float_io). INPUT.f32: N inputs in the model's layout; OUT.f32
// receives the N outputs. Prints {"images", "seconds", "input", "output"} as JSON.
// CATQ_PEERS: the folder whose node_modules holds @litertjs/core (scripts/setup.sh installs it in .cache/peers).
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import vm from "node:vm";

const peers = process.env.CATQ_PEERS;
if (!peers) throw new Error("CATQ_PEERS is not set");
const core = join(peers, "node_modules/@litertjs/core");
globalThis.self = globalThis;
globalThis.require = createRequire(join(core, "package.json"));
globalThis.__dirname = join(core, "wasm");
globalThis.importScripts = (u) => {
  const p = String(u).startsWith("file:") ? fileURLToPath(String(u)) : String(u);
  vm.runInThisContext(readFileSync(p, "utf8"), { filename: p });
};
const realFetch = globalThis.fetch;
globalThis.fetch = async (u, o) => {
  const s = String(u);
  if (s.startsWith("file:")) return new Response(readFileSync(fileURLToPath(s)), { headers: { "Content-Type": "application/wasm" } });
  return realFetch(u, o);
};
// LiteRT.js logs its environment to stdout/stderr; keep stdout for the JSON line.
const log = console.log;
console.log = console.info = console.warn = () => {};
const { loadLiteRt, loadAndCompile, Tensor } = await import(pathToFileURL(join(core, "dist/index.js")).href);
await loadLiteRt(pathToFileURL(join(core, "wasm") + "/").href);
const [modelPath, inputPath, n, outPath] = process.argv.slice(2);
const N = Number(n);
const model = await loadAndCompile(new Uint8Array(readFileSync(modelPath)), { accelerator: "wasm", cpuOptions: { numThreads: 1 } });
const inDet = model.getInputDetails()[0], outDet = model.getOutputDetails()[0];
const per = inDet.shape.reduce((a, b) => a * b, 1);
const buf = readFileSync(inputPath);
const x = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
if (x.length !== N * per) throw new Error(`${inputPath}: ${x.length} floats, expected ${N} x ${per}`);
const outs = [];
const t0 = process.hrtime.bigint();
for (let i = 0; i < N; ++i) {
  const t = new Tensor(x.slice(i * per, (i + 1) * per), inDet.shape);
  const r = await model.run([t]);
  outs.push((await r[0].data()).slice());
  t.delete();
  for (const o of r) o.delete();
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const y = new Float32Array(outs.reduce((s, p) => s + p.length, 0));
let off = 0;
for (const p of outs) { y.set(p, off); off += p.length; }
writeFileSync(outPath, Buffer.from(y.buffer));
log(JSON.stringify({ images: N, seconds, input: inDet.shape, output: outDet.shape }));
