// Times an ONNX model in ONNX Runtime (npm onnxruntime-node, CPU, THREADS intra-op threads, default 1) for
// bench/cnn_ort.sh.
// Usage: node ort_speed.mjs MODEL.onnx IMAGES.f32 N C H W BATCH OUT.f32 [THREADS]
// IMAGES.f32: N·C·H·W little-endian float32; OUT.f32 receives the first output for all N images (float32). One
// warm-up batch runs before the timed pass over all images. Prints {"images_per_s", "seconds", "threads"} as JSON.
// CATQ_PEERS: the folder whose node_modules holds onnxruntime-node (scripts/setup.sh installs it in .cache/peers).
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const peers = process.env.CATQ_PEERS;
if (!peers) throw new Error("CATQ_PEERS is not set");
const ort = await import(pathToFileURL(join(peers, "node_modules/onnxruntime-node/dist/index.js")).href);
const [modelPath, inputPath, n, c, h, w, batch, outPath, threadsArg] = process.argv.slice(2);
const threads = Number(threadsArg || 1);
const [N, C, H, W, B] = [n, c, h, w, batch].map(Number);
const buf = readFileSync(inputPath);
const x = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
if (x.length !== N * C * H * W) throw new Error(`${inputPath}: ${x.length} floats, expected ${N * C * H * W}`);
const session = await ort.InferenceSession.create(modelPath, {
  intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: "all", executionMode: "sequential" });
const per = C * H * W;
const run = async (i0, i1) => {
  const t = new ort.Tensor("float32", x.subarray(i0 * per, i1 * per), [i1 - i0, C, H, W]);
  const out = await session.run({ [session.inputNames[0]]: t });
  return out[session.outputNames[0]];
};
await run(0, Math.min(B, N));  // warm-up
const parts = [];
const t0 = process.hrtime.bigint();
for (let i = 0; i < N; i += B) parts.push((await run(i, Math.min(i + B, N))).data.slice());
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const total = parts.reduce((s, p) => s + p.length, 0);
const y = new Float32Array(total);
let off = 0;
for (const p of parts) { y.set(p, off); off += p.length; }
writeFileSync(outPath, Buffer.from(y.buffer));
console.log(JSON.stringify({ images_per_s: N / seconds, seconds, threads }));
