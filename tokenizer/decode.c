/* decode.c - ids to text with the ByteLevel decoder: the bytes of consecutive model tokens are
 * joined and read as UTF-8 (ill-formed bytes become U+FFFD); an added token is its content. The
 * streaming decoder holds back an incomplete character until the next token completes it. The
 * clean-up of spaces (cleanup.c) runs after both. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok.h"

struct MxcTokStream {
    const MxcTokenizer *t;
    int skip_special, clean_up;
    Cleanup cleanup;
    Buf raw;     /* text of this put before the clean-up */
    Buf pending; /* bytes of model tokens not yet printed: an incomplete character */
    Buf out;
};

static int check_id(const MxcTokenizer *t, int32_t id, MxcTokError *err)
{
    if (id < 0 || id >= t->n_ids || !t->bytes[id])
        return tok_fail(err, "token id %d is not in the vocabulary (0 to %d)", id, t->n_ids - 1);
    return 0;
}

int mxc_tokenizer_decode(const MxcTokenizer *t, const int32_t *ids, size_t n, int skip_special,
                         char **text, size_t *len, MxcTokError *err)
{
    return mxc_tokenizer_decode_flags(t, ids, n, skip_special ? MXC_TOK_SKIP_SPECIAL : 0, text, len,
                                      err);
}

int mxc_tokenizer_decode_flags(const MxcTokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                               char **text, size_t *len, MxcTokError *err)
{
    int skip_special = (flags & MXC_TOK_SKIP_SPECIAL) != 0;
    Buf run = {0}, out = {0};
    *text = NULL;
    *len = 0;
    if (err) err->msg[0] = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (check_id(t, id, err) != 0) goto fail;
        if (t->added_kind[id]) {
            if (skip_special && t->added_kind[id] == 2) continue;
            if (utf8_sanitize((const unsigned char *)run.p, run.len, &out, NULL) != 0 ||
                buf_add(&out, t->bytes[id], t->bytes_len[id]) != 0)
                goto oom;
            run.len = 0;
        } else if (buf_add(&run, t->bytes[id], t->bytes_len[id]) != 0) {
            goto oom;
        }
    }
    if (utf8_sanitize((const unsigned char *)run.p, run.len, &out, NULL) != 0) goto oom;
    if (flags & MXC_TOK_CLEAN_UP_SPACES) {
        Cleanup c = {0};
        run.len = 0;
        int rc = cleanup_put(&c, out.p ? out.p : "", out.len, &run, 1);
        cleanup_free(&c);
        Buf tmp = out;
        out = run;
        run = tmp;
        if (rc != 0) goto oom;
    }
    if (buf_add(&out, "", 0) != 0) goto oom;
    free(run.p);
    *text = out.p;
    *len = out.len;
    return 0;
oom:
    tok_fail(err, "out of memory");
fail:
    free(run.p);
    free(out.p);
    return -1;
}

MxcTokStream *mxc_tokenizer_stream_new(const MxcTokenizer *t, int skip_special)
{
    return mxc_tokenizer_stream_new_flags(t, skip_special ? MXC_TOK_SKIP_SPECIAL : 0);
}

MxcTokStream *mxc_tokenizer_stream_new_flags(const MxcTokenizer *t, unsigned flags)
{
    MxcTokStream *s = calloc(1, sizeof *s);
    if (s) {
        s->t = t;
        s->skip_special = (flags & MXC_TOK_SKIP_SPECIAL) != 0;
        s->clean_up = (flags & MXC_TOK_CLEAN_UP_SPACES) != 0;
    }
    return s;
}

/* s->out holds this call's text: through the clean-up when asked, then NUL-terminated. */
static int stream_finish(MxcTokStream *s, int final, const char **text, size_t *len)
{
    if (s->clean_up) {
        Buf tmp = s->raw;
        s->raw = s->out;
        s->out = tmp;
        s->out.len = 0;
        if (cleanup_put(&s->cleanup, s->raw.p ? s->raw.p : "", s->raw.len, &s->out, final) != 0) return -1;
    }
    if (buf_add(&s->out, "", 0) != 0) return -1;
    *text = s->out.p;
    *len = s->out.len;
    return 0;
}

int mxc_tokenizer_stream_put(MxcTokStream *s, int32_t id, const char **text, size_t *len,
                             MxcTokError *err)
{
    const MxcTokenizer *t = s->t;
    *text = "";
    *len = 0;
    if (check_id(t, id, err) != 0) return -1;
    s->out.len = 0;
    if (t->added_kind[id]) {
        if (s->skip_special && t->added_kind[id] == 2) return 0;
        if (utf8_sanitize((const unsigned char *)s->pending.p, s->pending.len, &s->out, NULL) != 0 ||
            buf_add(&s->out, t->bytes[id], t->bytes_len[id]) != 0)
            return tok_fail(err, "out of memory");
        s->pending.len = 0;
    } else {
        size_t hold;
        if (buf_add(&s->pending, t->bytes[id], t->bytes_len[id]) != 0 ||
            utf8_sanitize((const unsigned char *)s->pending.p, s->pending.len, &s->out, &hold) != 0)
            return tok_fail(err, "out of memory");
        memmove(s->pending.p, s->pending.p + s->pending.len - hold, hold);
        s->pending.len = hold;
    }
    if (stream_finish(s, 0, text, len) != 0) return tok_fail(err, "out of memory");
    return 0;
}

int mxc_tokenizer_stream_flush(MxcTokStream *s, const char **text, size_t *len)
{
    s->out.len = 0;
    if (utf8_sanitize((const unsigned char *)s->pending.p, s->pending.len, &s->out, NULL) != 0)
        return -1;
    s->pending.len = 0;
    return stream_finish(s, 1, text, len);
}

void mxc_tokenizer_stream_free(MxcTokStream *s)
{
    if (!s) return;
    free(s->pending.p);
    free(s->out.p);
    free(s->raw.p);
    cleanup_free(&s->cleanup);
    free(s);
}
