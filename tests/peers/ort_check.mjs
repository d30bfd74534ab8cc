// Runs an ONNX model in ONNX Runtime (npm onnxruntime-node, CPU) for the test PeerOnnxRuntime.*.
// Usage: node ort_check.mjs MODEL.onnx INPUT.f32 N C H W OUT.f32
// INPUT.f32: N·C·H·W little-endian float32 images; OUT.f32 receives the first output (float32, row-major).
// CATQ_PEERS: the folder whose node_modules holds onnxruntime-node (scripts/setup.sh installs it in .cache/peers).
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const peers = process.env.CATQ_PEERS;
if (!peers) throw new Error("CATQ_PEERS is not set");
const ort = await import(pathToFileURL(join(peers, "node_modules/onnxruntime-node/dist/index.js")).href);
const [modelPath, inputPath, n, c, h, w, outPath] = process.argv.slice(2);
const dims = [n, c, h, w].map(Number);
const buf = readFileSync(inputPath);
const x = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1, graphOptimizationLevel: "all" });
const out = await session.run({ [session.inputNames[0]]: new ort.Tensor("float32", x, dims) });
const y = out[session.outputNames[0]];
writeFileSync(outPath, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
console.log(JSON.stringify({ output: session.outputNames[0], dims: y.dims }));
