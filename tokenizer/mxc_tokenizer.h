/* mxc_tokenizer.h - Hugging Face `tokenizer.json` byte-level BPE tokenizers (GPT-2,
 * GPT-NeoX-20B and the like): open, encode, decode, stream-decode, look up tokens.
 *
 * A file that uses a feature this library does not implement is refused at open with a message
 * naming the feature; it is never tokenized differently in silence. docs/tokenizer.md lists what
 * is supported. Link with `pkg-config --cflags --libs mxc-tokenizer`.
 *
 * Every function that can fail returns 0 on success and -1 on failure, with a message in *err
 * when err is not NULL. A tokenizer handle is not safe to use from two threads at once (encode
 * fills a cache of words); open one per thread. */
#ifndef MXC_TOKENIZER_H
#define MXC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct MxcTokenizer MxcTokenizer;
typedef struct MxcTokStream MxcTokStream;

typedef struct MxcTokError {
    char msg[512]; /* e.g. "tokenizer.json: model.merges[12]: 'ab' is not in the vocabulary" */
} MxcTokError;

/* Open `path`: a tokenizer.json file, or a folder holding one. In a folder, the special-token
 * names of tokenizer_config.json (bos_token, eos_token, pad_token, unk_token) are read when that
 * file is present. */
int mxc_tokenizer_open(const char *path, MxcTokenizer **out, MxcTokError *err);

/* The same from `len` bytes of JSON in memory; `name` is used in messages. */
int mxc_tokenizer_open_json(const char *json, size_t len, const char *name, MxcTokenizer **out,
                            MxcTokError *err);

void mxc_tokenizer_close(MxcTokenizer *tok); /* NULL is fine */

/* Encode `len` bytes of UTF-8 text (invalid UTF-8 is refused). `add_special` applies the
 * post-processor (BOS/EOS of a TemplateProcessing). On success *ids is a malloc'd array of *n
 * ids (NULL when *n is 0) that the caller frees with free(). */
int mxc_tokenizer_encode(MxcTokenizer *tok, const char *text, size_t len, int add_special,
                         int32_t **ids, size_t *n, MxcTokError *err);

/* Decode ids to text (malloc'd, NUL-terminated, *len bytes without the NUL). Bytes that do not
 * form valid UTF-8 become U+FFFD, as the reference decoders do. An id outside the vocabulary is
 * an error. `skip_special` leaves special tokens out. */
int mxc_tokenizer_decode(const MxcTokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                         char **text, size_t *len, MxcTokError *err);

/* Flags of the _flags variants of decode and of the stream. MXC_TOK_CLEAN_UP_SPACES applies
 * transformers' clean_up_tokenization to the decoded text (" ." -> ".", " n't" -> "n't", ...;
 * docs/tokenizer.md), what tokenizer_config.json's clean_up_tokenization_spaces asks for. */
enum { MXC_TOK_SKIP_SPECIAL = 1, MXC_TOK_CLEAN_UP_SPACES = 2 };
int mxc_tokenizer_decode_flags(const MxcTokenizer *tok, const int32_t *ids, size_t n,
                               unsigned flags, char **text, size_t *len, MxcTokError *err);

/* Streaming decoder, for printing generated tokens one by one: each put returns the text that
 * is complete so far (never a partial UTF-8 character); flush returns the rest. The pieces put
 * together equal mxc_tokenizer_decode of all the ids (with the same flags: a clean-up holds back
 * a tail such as " n" that could still change). The returned pointer stays valid until the
 * next call on the stream. */
MxcTokStream *mxc_tokenizer_stream_new(const MxcTokenizer *tok, int skip_special);
MxcTokStream *mxc_tokenizer_stream_new_flags(const MxcTokenizer *tok, unsigned flags);
int mxc_tokenizer_stream_put(MxcTokStream *s, int32_t id, const char **text, size_t *len,
                             MxcTokError *err);
int mxc_tokenizer_stream_flush(MxcTokStream *s, const char **text, size_t *len);
void mxc_tokenizer_stream_free(MxcTokStream *s); /* NULL is fine */

/* Number of ids: one more than the largest id (vocabulary and added tokens). */
int32_t mxc_tokenizer_vocab_size(const MxcTokenizer *tok);

/* A token as the file writes it (byte-level alphabet, e.g. "Ġworld"); NULL for an id that is
 * not used. *len (if not NULL) gets its length. */
const char *mxc_tokenizer_id_to_token(const MxcTokenizer *tok, int32_t id, size_t *len);

/* The bytes a token decodes to (" world"); may be a partial UTF-8 character. */
const char *mxc_tokenizer_token_bytes(const MxcTokenizer *tok, int32_t id, size_t *len);

/* The id of a token written as in the file, or -1. */
int32_t mxc_tokenizer_token_to_id(const MxcTokenizer *tok, const char *token, size_t len);

/* Special ids by name: "bos", "eos", "pad" or "unk"; -1 when the tokenizer has none. From
 * tokenizer_config.json when it was read, else from the post-processor's template (its token
 * before the text is BOS, after it EOS), else the model's unk_token, else a special token
 * named <|endoftext|> (BOS and EOS of GPT-2 and GPT-NeoX). */
int32_t mxc_tokenizer_special_id(const MxcTokenizer *tok, const char *name);

/* Non-zero when id is an added token marked special. */
int mxc_tokenizer_is_special(const MxcTokenizer *tok, int32_t id);

#ifdef __cplusplus
}
#endif

#endif
