/* state_seeds.c - write the seed corpus of fuzz_state into a directory.
 *
 * Usage: state_seeds DIR. Valid blobs of batch 1, 2 and 3 of the model of fuzz_state_desc.h,
 * with position counts (the kernels of that model do nothing, so the floats stay 0); the
 * fuzzer mutates from there. */
#include <stdio.h>
#include <stdlib.h>

#include "tests/fuzz/fuzz_state_desc.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: state_seeds DIR\n");
        return 2;
    }
    MxrtModel *m;
    if (mxrt_open(&fuzz_state_desc, NULL, &m) != 0) {
        fprintf(stderr, "state_seeds: %s\n", mxrt_last_error());
        return 1;
    }
    int rc = 0;
    for (int batch = 1; batch <= 3 && rc == 0; batch++) {
        MxrtState *s;
        int32_t tokens[9] = {0};
        float logits[9 * 4];
        if (mxrt_state_new(m, batch, &s) != 0 || mxrt_forward(m, s, tokens, batch, logits) != 0)
            return 1;
        int64_t n = mxrt_state_save_size(s);
        unsigned char *buf = malloc((size_t)n);
        char path[4096];
        snprintf(path, sizeof path, "%s/batch%d.state", argv[1], batch);
        if (!buf || mxrt_state_save(s, buf, n) != 0 || mxrt_state_save_file(s, path) != 0) {
            fprintf(stderr, "state_seeds: %s\n", mxrt_last_error());
            rc = 1;
        }
        free(buf);
        mxrt_state_free(s);
    }
    mxrt_close(m);
    return rc;
}
