// expected.mjs - the expected ids (and decoded text) of every corpus text under every test
// tokenizer, computed with the independent JavaScript implementation @huggingface/tokenizers.
//
//   node tools/tokenizer-ref/expected.mjs NODE_MODULES TESTDIR
//
// NODE_MODULES holds @huggingface/tokenizers (installed outside the repository); TESTDIR is
// tests/tokenizer: it reads corpus/*.txt and */tokenizer.json and writes
// expected/TOKENIZER/TEXT.ids (decimal ids separated by spaces, a newline at the end) and
// expected/TOKENIZER/TEXT.decoded (decode(encode(text)), no clean-up of spaces) and
// expected/TOKENIZER/TEXT.cleaned (the same with clean_up_tokenization_spaces).
import fs from "fs";
import path from "path";
import { pathToFileURL } from "url";

const [nm, testdir] = process.argv.slice(2);
if (!nm || !testdir) {
  console.error("usage: expected.mjs NODE_MODULES TESTDIR");
  process.exit(2);
}
const entry = path.join(nm, "@huggingface", "tokenizers", "dist", "tokenizers.mjs");
const { Tokenizer } = await import(pathToFileURL(entry).href);

const texts = fs.readdirSync(path.join(testdir, "corpus")).filter((f) => f.endsWith(".txt")).sort();
const toks = fs.readdirSync(testdir).filter((d) =>
  fs.existsSync(path.join(testdir, d, "tokenizer.json"))).sort();
for (const name of toks) {
  const json = JSON.parse(fs.readFileSync(path.join(testdir, name, "tokenizer.json"), "utf8"));
  const tok = new Tokenizer(json, {});
  const outdir = path.join(testdir, "expected", name);
  fs.mkdirSync(outdir, { recursive: true });
  let total = 0;
  for (const t of texts) {
    const text = fs.readFileSync(path.join(testdir, "corpus", t), "utf8");
    const ids = tok.encode(text).ids;
    if (ids.some((x) => !Number.isInteger(x))) throw new Error(`${name}/${t}: a token has no id`);
    const base = t.replace(/\.txt$/, "");
    fs.writeFileSync(path.join(outdir, base + ".ids"), ids.join(" ") + "\n");
    const dec = ids.length ? tok.decode(ids, { clean_up_tokenization_spaces: false }) : "";
    fs.writeFileSync(path.join(outdir, base + ".decoded"), dec);
    const clean = ids.length ? tok.decode(ids, { clean_up_tokenization_spaces: true }) : "";
    fs.writeFileSync(path.join(outdir, base + ".cleaned"), clean);
    total += ids.length;
  }
  console.log(`${name}: ${texts.length} texts, ${total} ids`);
}
