#!/usr/bin/env python3
"""make-tokenizer-128.py - write tests/tokenizer-128/tokenizer.json: a GPT-2-style byte-level
BPE tokenizer of 128 ids for the model folders of the tests (golden cases of vocabulary 128).

Id 0 is the special token <|endoftext|> (BOS and EOS, as in GPT-NeoX and xLSTM-7B), ids 1-95
the printable ASCII bytes, 96 the newline, 97-127 the results of 31 merges of common English
pairs. Text outside printable ASCII and newlines cannot be encoded with it.

    python3 tools/make-tokenizer-128.py > tests/tokenizer-128/tokenizer.json
"""
import json

def byte_char(b):
    """GPT-2's bytes_to_unicode for the bytes used here."""
    if 0x21 <= b <= 0x7e:
        return chr(b)
    return {0x20: "\u0120", 0x0a: "\u010a"}[b]

vocab = {"<|endoftext|>": 0}
for b in list(range(0x20, 0x7f)) + [0x0a]:
    vocab[byte_char(b)] = len(vocab)
pairs = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "a"), ("i", "n"), ("e", "r"), ("o", "n"),
         ("Ġ", "s"), ("r", "e"), ("Ġ", "w"), ("a", "t"), ("e", "n"), ("Ġ", "o"), ("i", "s"),
         ("Ġ", "c"), ("o", "r"), ("e", "s"), ("Ġ", "b"), ("a", "n"), ("Ġ", "f"), ("e", "d"),
         ("Ġ", "m"), ("i", "t"), ("Ġ", "p"), ("a", "r"), ("Ġ", "h"), ("o", "u"), ("Ġ", "d"),
         ("l", "l"), ("Ġ", "i"), ("in", "g")]
for a, b in pairs:
    vocab[a + b] = len(vocab)
assert len(vocab) == 128, len(vocab)
byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
tok = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": 0, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True}],
    "normalizer": None, "pre_tokenizer": byte_level, "post_processor": byte_level,
    "decoder": byte_level,
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
              "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
              "vocab": vocab, "merges": [a + " " + b for a, b in pairs]},
}
print(json.dumps(tok, ensure_ascii=False))
