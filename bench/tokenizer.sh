#!/bin/sh
# tokenizer.sh - tokens per second of libmxc_tokenizer and of the JavaScript reference
# (@huggingface/tokenizers) on the same text with the GPT-NeoX-20B tokenizer, one thread each.
#   bench/tokenizer.sh BENCH_TOKENIZER_BINARY SRCDIR [TEXT]
# TEXT defaults to the test corpus (tests/tokenizer/corpus) but its very long words
# (longword.txt, which the reference encodes at a few hundredths of its usual speed), repeated to
# about 4 MB. The JS side
# runs when $MXC_TOKREF_NODE_MODULES names a node_modules holding @huggingface/tokenizers
# (docs/tokenizer.md says how to install it outside the repository); otherwise it is skipped
# with a message.
set -eu
bin=$1 src=$2
tok="$src/tests/tokenizer/gpt-neox-20b/tokenizer.json"
text=${3:-}
if [ -z "$text" ]; then
    text=$(mktemp /tmp/mxc-tok-bench.XXXXXX)
    trap 'rm -f "$text"' EXIT
    i=0
    while [ "$i" -lt 800 ]; do
        for f in "$src"/tests/tokenizer/corpus/*.txt; do
            case $f in */longword.txt) ;; *) cat "$f" ;; esac
        done
        i=$((i + 1))
    done > "$text"
fi
echo "load: $(uptime)"
echo "tokenizer: $tok"
echo "text: $text ($(wc -c < "$text") bytes)"
# whole text as one string, then in pieces of about 4 KB ending at a newline
"$bin" "$tok" "$text" 3 0
"$bin" "$tok" "$text" 3 4096
nm=${MXC_TOKREF_NODE_MODULES:-}
if [ -n "$nm" ] && [ -f "$nm/@huggingface/tokenizers/dist/tokenizers.mjs" ] && command -v node > /dev/null; then
    node "$src/bench/tokenizer_ref.mjs" "$nm" "$tok" "$text" 3 0
    node "$src/bench/tokenizer_ref.mjs" "$nm" "$tok" "$text" 3 4096
else
    echo "js:  skipped: set MXC_TOKREF_NODE_MODULES to a node_modules with @huggingface/tokenizers (and install node) to compare"
fi
