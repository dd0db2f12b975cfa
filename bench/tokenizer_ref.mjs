// tokenizer_ref.mjs - the encode speed of the JavaScript reference (@huggingface/tokenizers) on
// one text, timed as bench_tokenizer.c times libmxc_tokenizer.
//   node bench/tokenizer_ref.mjs NODE_MODULES TOKENIZER_JSON TEXT [REPEATS]
import fs from "fs";
import path from "path";
import { pathToFileURL } from "url";

const [nm, tokfile, textfile, rep] = process.argv.slice(2);
const repeats = Number(rep ?? 3);
const { Tokenizer } = await import(pathToFileURL(path.join(nm, "@huggingface", "tokenizers", "dist", "tokenizers.mjs")).href);
const text = fs.readFileSync(textfile, "utf8");
let t0 = performance.now();
const tok = new Tokenizer(JSON.parse(fs.readFileSync(tokfile, "utf8")), {});
const open = (performance.now() - t0) / 1e3;
let first = 0, best = Infinity, n = 0;
for (let r = 0; r <= repeats; r++) {
  t0 = performance.now();
  n = tok.encode(text).ids.length;
  const dt = (performance.now() - t0) / 1e3;
  if (r === 0) first = dt; else best = Math.min(best, dt);
}
console.log(`js:  ${Buffer.byteLength(text)} bytes, ${n} tokens; open ${open.toFixed(3)} s; first encode ${first.toFixed(3)} s ` +
  `(${(n / first / 1e6).toFixed(2)} M tokens/s); best of ${repeats} more ${best.toFixed(3)} s (${(n / best / 1e6).toFixed(2)} M tokens/s)`);
