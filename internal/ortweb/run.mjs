// run.mjs runs an ONNX model in ONNX Runtime's WebAssembly build
// (npm onnxruntime-web) under Node.js, for lprconv's tests.
//
//   node run.mjs ORTWEB_DIR MODEL INPUT.bin N,C,H,W BATCH OUTPUT.bin
//
// ORTWEB_DIR is the folder `npm install --prefix` installed onnxruntime-web
// into. INPUT.bin holds N*C*H*W little-endian float32 values for the
// model's first input; the model runs on chunks of BATCH samples with the
// wasm execution provider on one thread, and OUTPUT.bin receives the first
// output of every chunk, concatenated, as little-endian float32. The
// script prints one JSON line: {"output": NAME, "dims": [...], "version": V}.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dir, modelPath, inputPath, shapeArg, batchArg, outputPath] = process.argv.slice(2);
if (!outputPath) {
  console.error('usage: node run.mjs ORTWEB_DIR MODEL INPUT.bin N,C,H,W BATCH OUTPUT.bin');
  process.exit(2);
}
const require = createRequire(join(dir, 'node_modules', 'package.json'));
const ort = await import(pathToFileURL(require.resolve('onnxruntime-web')).href);
ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';

const shape = shapeArg.split(',').map(Number);
const batch = Number(batchArg);
if (shape.length < 1 || shape.some((d) => !Number.isInteger(d) || d < 0) || !(batch > 0)) {
  console.error(`bad shape ${shapeArg} or batch ${batchArg}`);
  process.exit(2);
}
const raw = readFileSync(inputPath);
const input = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
const per = shape.slice(1).reduce((a, b) => a * b, 1);
if (input.length !== shape[0] * per) {
  console.error(`${inputPath}: ${input.length} values, shape ${shapeArg} needs ${shape[0] * per}`);
  process.exit(2);
}

const session = await ort.InferenceSession.create(readFileSync(modelPath), {
  executionProviders: ['wasm'],
  graphOptimizationLevel: 'all',
});
const inName = session.inputNames[0];
const outName = session.outputNames[0];
const parts = [];
let dims = null;
for (let i = 0; i < shape[0]; i += batch) {
  const n = Math.min(batch, shape[0] - i);
  const x = new ort.Tensor('float32', input.slice(i * per, (i + n) * per), [n, ...shape.slice(1)]);
  const out = (await session.run({ [inName]: x }))[outName];
  if (out.type !== 'float32') {
    console.error(`output ${outName} is ${out.type}, not float32`);
    process.exit(1);
  }
  parts.push(Buffer.from(out.data.buffer, out.data.byteOffset, out.data.byteLength));
  dims = dims ? [dims[0] + out.dims[0], ...dims.slice(1)] : [...out.dims];
}
writeFileSync(outputPath, Buffer.concat(parts));
console.log(JSON.stringify({ output: outName, dims, version: ort.env.versions?.web ?? '' }));
await session.release();
