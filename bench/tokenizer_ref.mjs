// tokenizer_ref.mjs - the encode speed of the JavaScript reference (@huggingface/tokenizers) on
// one text, timed as bench_tokenizer.c times libmxc_tokenizer.
//   node bench/tokenizer_ref.mjs NODE_MODULES TOKENIZER_JSON TEXT [REPEATS [CHUNK]]
// CHUNK as in bench_tokenizer.c: pieces ending at the first newline after CHUNK bytes (UTF-8
// bytes, so that both sides cut the same pieces).
import fs from "fs";
import path from "path";
import { pathToFileURL } from "url";

const [nm, tokfile, textfile, rep] = process.argv.slice(2);
const repeats = Number(rep ?? 3);
const chunk = Number(process.argv[6] ?? 0);
const { Tokenizer } = await import(pathToFileURL(path.join(nm, "@huggingface", "tokenizers", "dist", "tokenizers.mjs")).href);
const bytes = fs.readFileSync(textfile);
const text = bytes.toString("utf8");
const pieces = [];
for (let at = 0; at < bytes.length;) {
  let end = bytes.length;
  if (chunk > 0) {
    end = Math.min(at + chunk, bytes.length);
    while (end < bytes.length && bytes[end - 1] !== 10) end++;
  }
  pieces.push(bytes.subarray(at, end).toString("utf8"));
  at = end;
}
let t0 = performance.now();
const tok = new Tokenizer(JSON.parse(fs.readFileSync(tokfile, "utf8")), {});
const open = (performance.now() - t0) / 1e3;
let first = 0, best = Infinity, n = 0;
for (let r = 0; r <= repeats; r++) {
  t0 = performance.now();
  n = 0;
  for (const p of pieces) n += tok.encode(p).ids.length;
  const dt = (performance.now() - t0) / 1e3;
  if (r === 0) first = dt; else best = Math.min(best, dt);
}
console.log(`js:  ${bytes.length} bytes (chunks of ${chunk}), ${n} tokens; open ${open.toFixed(3)} s; first encode ${first.toFixed(3)} s ` +
  `(${(n / first / 1e6).toFixed(2)} M tokens/s); best of ${repeats} more ${best.toFixed(3)} s (${(n / best / 1e6).toFixed(2)} M tokens/s)`);
