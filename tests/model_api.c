/* model_api.c - see model_api.h. */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model_api.h"
#include "runtime/safetensors.h"
#include "testutil.h"

static void *sym(void *so, const char *prefix, const char *name)
{
    char full[256];
    snprintf(full, sizeof full, "%s_%s", prefix, name);
    void *p = dlsym(so, full);
    if (!p) fprintf(stderr, "missing symbol %s\n", full);
    return p;
}

bool api_load(Api *a, const char *so_path, const char *prefix)
{
    memset(a, 0, sizeof *a);
    a->so = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
    if (!a->so) {
        fprintf(stderr, "dlopen %s: %s\n", so_path, dlerror());
        return false;
    }
    *(void **)&a->open = sym(a->so, prefix, "open");
    *(void **)&a->close = sym(a->so, prefix, "close");
    *(void **)&a->state_new = sym(a->so, prefix, "state_new");
    *(void **)&a->state_free = sym(a->so, prefix, "state_free");
    *(void **)&a->state_reset = sym(a->so, prefix, "state_reset");
    *(void **)&a->state_copy = sym(a->so, prefix, "state_copy");
    *(void **)&a->state_batch = sym(a->so, prefix, "state_batch");
    *(void **)&a->set_threads = sym(a->so, prefix, "state_set_threads");
    *(void **)&a->forward = sym(a->so, prefix, "forward");
    *(void **)&a->step = sym(a->so, prefix, "step");
    *(void **)&a->last_error = sym(a->so, prefix, "last_error");
    *(void **)&a->vocab_size = sym(a->so, prefix, "vocab_size");
    *(void **)&a->vocab_padded = sym(a->so, prefix, "vocab_padded");
    *(void **)&a->d_model = sym(a->so, prefix, "d_model");
    *(void **)&a->n_blocks = sym(a->so, prefix, "n_blocks");
    return a->open && a->close && a->state_new && a->state_free && a->state_reset &&
           a->state_copy && a->state_batch && a->set_threads && a->forward && a->step &&
           a->last_error && a->vocab_size && a->vocab_padded && a->d_model && a->n_blocks;
}

void api_unload(Api *a)
{
    if (a->so) dlclose(a->so);
    memset(a, 0, sizeof *a);
}

const char *mxc_path(void)
{
    const char *p = getenv("MXC");
    return p && *p ? p : "./mxc";
}

int run_command(const char *cmd)
{
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

const char *test_out_dir(void)
{
    static char dir[600];
    if (!dir[0]) {
        const char *b = getenv("MXC_TEST_BUILDDIR");
        snprintf(dir, sizeof dir, "%.580s/out", b && *b ? b : "tests");
        mkdir(dir, 0777);
    }
    return dir;
}

int model_build(const char *spec, const char *prefix, const char *extra, const char *dir,
                char *so, size_t len)
{
    char cmd[4096];
    snprintf(so, len, "%s/lib%s.so", dir, prefix);
    unlink(so);
    snprintf(cmd, sizeof cmd, "'%s' build '%s' -o '%s' --prefix %s %s 2>'%s/%s.err'",
             mxc_path(), spec, so, prefix, extra ? extra : "", dir, prefix);
    return run_command(cmd);
}

bool model_load(Api *a, const char *spec, const char *prefix, const char *extra)
{
    char so[1024];
    memset(a, 0, sizeof *a);
    int rc = model_build(spec, prefix, extra, test_out_dir(), so, sizeof so);
    if (rc == 0) return api_load(a, so, prefix);
    char err[1024];
    snprintf(err, sizeof err, "%s/%s.err", test_out_dir(), prefix);
    fprintf(stderr, "mxc build %s: exit status %d\n", spec, rc);
    FILE *f = fopen(err, "r");
    if (f) {
        char line[512];
        for (int i = 0; i < 40 && fgets(line, sizeof line, f); i++) fputs(line, stderr);
        fclose(f);
    }
    return false;
}

double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) return INFINITY;
        if (d > m) m = d;
    }
    return m;
}

double max_rel_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (1.0 + fabs((double)b[i]));
        if (isnan(d)) return INFINITY;
        if (d > m) m = d;
    }
    return m;
}

uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float uniform_pm1(uint64_t *state)
{
    return (float)((double)(splitmix64(state) >> 11) * 0x1p-52 - 1.0);
}

int step_all(const Api *a, void *m, void *s, const int32_t *tokens, int batch, int len,
             float *out)
{
    int V = a->vocab_padded(), rc = 0;
    int32_t *col = malloc(sizeof *col * (size_t)batch);
    float *lg = malloc(sizeof *lg * (size_t)batch * (size_t)V);
    if (!col || !lg) rc = -1;
    for (int t = 0; t < len && rc == 0; t++) {
        for (int b = 0; b < batch; b++) col[b] = tokens[(size_t)b * len + t];
        rc = a->step(m, s, col, lg);
        for (int b = 0; b < batch && rc == 0; b++)
            memcpy(out + ((size_t)b * len + t) * V, lg + (size_t)b * V, sizeof *lg * (size_t)V);
    }
    free(col);
    free(lg);
    return rc;
}

int forward_pieces(const Api *a, void *m, void *s, const int32_t *tokens, int batch, int len,
                   const int *pieces, int n_pieces, float *out)
{
    int V = a->vocab_padded(), rc = 0;
    for (int t0 = 0, c = 0; t0 < len && rc == 0; c++) {
        int n = pieces[c % n_pieces];
        if (n < 1) return -1; /* a piece of no tokens would never end */
        if (n > len - t0) n = len - t0;
        int32_t *piece = malloc(sizeof *piece * (size_t)batch * (size_t)n);
        float *lg = malloc(sizeof *lg * (size_t)batch * (size_t)n * (size_t)V);
        if (!piece || !lg) rc = -1;
        for (int b = 0; b < batch && rc == 0; b++)
            memcpy(piece + (size_t)b * n, tokens + (size_t)b * len + t0, sizeof *piece * (size_t)n);
        if (rc == 0) rc = a->forward(m, s, piece, n, lg);
        for (int b = 0; b < batch && rc == 0; b++)
            memcpy(out + ((size_t)b * len + t0) * V, lg + (size_t)b * n * V,
                   sizeof *lg * (size_t)n * (size_t)V);
        free(piece);
        free(lg);
        t0 += n;
    }
    return rc;
}

bool write_cuda_layout_weights(const char *dir, const char *out)
{
    char path[1024];
    StFile *base, *cuda;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (st_open(path, &base) != 0) return false;
    snprintf(path, sizeof path, "%s/slstm_cuda_layout.safetensors", dir);
    if (st_open(path, &cuda) != 0) {
        st_close(base);
        return false;
    }
    int n = st_count(base);
    StWriteTensor *t = calloc((size_t)n, sizeof *t);
    int replaced = 0;
    for (int i = 0; i < n; i++) {
        const StTensor *src = st_at(base, i), *alt = st_find(cuda, src->name);
        if (alt) {
            src = alt;
            replaced++;
        }
        t[i] = (StWriteTensor){src->name, src->dtype, src->rank, src->shape, src->data};
    }
    bool ok = replaced == st_count(cuda) && replaced > 0 && st_write(out, t, n, NULL) == 0;
    free(t);
    st_close(cuda);
    st_close(base);
    return ok;
}

/* The golden weights under Hugging Face names: the embedding as backbone.embeddings.weight
 * (mamba_ssm: backbone.embedding.weight, xlstm_large: embedding.weight), a tied lm_head.weight
 * left out; the rest as they are. */
static int hf_tensors(const StFile *base, StWriteTensor *t)
{
    int n = st_count(base), k = 0;
    const StTensor *emb = st_find(base, "backbone.embedding.weight");
    if (!emb) emb = st_find(base, "embedding.weight");
    for (int i = 0; i < n; i++) {
        const StTensor *src = st_at(base, i);
        bool tied = emb && strcmp(src->name, "lm_head.weight") == 0 && src->nbytes == emb->nbytes &&
                    memcmp(src->data, emb->data, (size_t)src->nbytes) == 0;
        if (tied) continue;  /* saved once, as the embedding */
        const char *hf = src == emb ? "backbone.embeddings.weight" : src->name;
        t[k++] = (StWriteTensor){hf, src->dtype, src->rank, src->shape, src->data};
    }
    return k;
}

bool write_hf_folder(const char *name, const char *out_dir, int shards, bool tokenizer)
{
    char path[1024], cmd[3000];
    mkdir(out_dir, 0777);
    /* config.json (and with a tokenizer the other configs of tests/hf/NAME, and the test
     * tokenizer when it has none) */
    if (tokenizer)
        snprintf(cmd, sizeof cmd, "cd '%s/hf/%s' && for f in *.json; do cp \"$f\" '%s/'; done && "
                 "{ [ -f tokenizer.json ] || cp '%s/tokenizer-128/tokenizer.json' '%s/'; }",
                 test_srcdir(), name, out_dir, test_srcdir(), out_dir);
    else
        snprintf(cmd, sizeof cmd, "cp '%s/hf/%s/config.json' '%s/config.json'", test_srcdir(), name,
                 out_dir);
    if (run_command(cmd) != 0) return false;
    snprintf(path, sizeof path, "%s/golden/%s/model.safetensors", test_srcdir(), name);
    StFile *base;
    if (st_open(path, &base) != 0) return false;
    StWriteTensor *t = calloc((size_t)st_count(base), sizeof *t);
    int k = hf_tensors(base, t);
    bool ok = true;
    if (shards <= 1) {
        snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
        ok = st_write(path, t, k, NULL) == 0;
    } else {
        /* contiguous runs of tensors per shard, and the index transformers writes */
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", out_dir);
        FILE *idx = fopen(path, "w");
        int64_t total = 0;
        for (int i = 0; i < k; i++) {
            int64_t n = 1;
            for (int d = 0; d < t[i].rank; d++) n *= t[i].shape[d];
            total += n * (t[i].dtype == ST_F32 ? 4 : 2);
        }
        ok = idx != NULL;
        if (idx) fprintf(idx, "{\n  \"metadata\": {\"total_size\": %lld},\n  \"weight_map\": {",
                         (long long)total);
        for (int s = 0; s < shards && ok; s++) {
            int from = s * k / shards, to = (s + 1) * k / shards;
            char file[64];
            snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, shards);
            snprintf(path, sizeof path, "%s/%s", out_dir, file);
            ok = to > from && st_write(path, t + from, to - from, NULL) == 0;
            for (int i = from; i < to && ok; i++)
                fprintf(idx, "%s\n    \"%s\": \"%s\"", i ? "," : "", t[i].name, file);
        }
        if (idx) ok = fprintf(idx, "\n  }\n}\n") > 0 && fclose(idx) == 0 && ok;
    }
    free(t);
    st_close(base);
    return ok;
}

bool write_hf_mamba_folder(const char *name, const char *out_dir)
{
    return write_hf_folder(name, out_dir, 1, false);
}

bool golden_load(Golden *g, const char *case_dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/io.safetensors", case_dir);
    memset(g, 0, sizeof *g);
    if (st_open(path, &g->io) != 0) return false;
    const StTensor *ids = st_find(g->io, "input_ids"), *lg = st_find(g->io, "logits");
    const StTensor *sl = st_find(g->io, "step_logits");
    if (!ids || !lg || !sl || ids->dtype != ST_I32 || lg->dtype != ST_F32 || lg->rank != 3 ||
        sl->dtype != ST_F32 || st_numel(sl) != st_numel(lg))
        return false;
    g->ids = ids->data;
    g->logits = lg->data;
    g->step_logits = sl->data;
    g->batch = (int)lg->shape[0];
    g->len = (int)lg->shape[1];
    g->vocab = (int)lg->shape[2];
    return true;
}

bool golden_load_case(Golden *g, const char *name)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/golden/%s", test_srcdir(), name);
    return golden_load(g, dir);
}
