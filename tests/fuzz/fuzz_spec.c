/* fuzz_spec.c - libFuzzer target: the spec frontend (scanner, parser, checker, printer).
 *
 * Input: arbitrary bytes as a spec file. Properties checked beyond "no crash, no sanitizer
 * report, no leak":
 *   - a failed load reported at least one error, a successful one none;
 *   - every model that loads prints (spec_print) to text that loads again and prints the
 *     same text: the resolved form reads back to the same model (spec-language.md, 9).
 * spec_load_string stops at the first NUL byte, so inputs holding a NUL also go through
 * spec_load_file (via a memfd), which reads every byte. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "frontend/spec.h"

/* The resolved form of every model of `f`, concatenated (malloc'd). */
static char *print_all(const SpecFile *f)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        abort();
    for (int i = 0; i < f->n_models; i++)
        spec_print(out, &f->models[i]);
    fclose(out);
    return text;
}

static void check_load(SpecFile *f, const DiagSink *d)
{
    if (!f) {
        if (d->n_errors == 0)
            abort(); /* refused without saying why */
        return;
    }
    if (d->n_errors != 0 || f->n_models < 1)
        abort();
    char *once = print_all(f);
    DiagSink d2;
    diag_init(&d2, NULL);
    SpecFile *again = spec_load_string("<resolved>", once, &d2);
    if (!again) {
        fprintf(stderr, "resolved form does not load:\n%s\n%s\n", once,
                d2.collected ? d2.collected : "");
        abort();
    }
    char *twice = print_all(again);
    if (strcmp(once, twice) != 0) {
        fprintf(stderr, "resolved form changes when read back:\n%s\n---\n%s\n", once, twice);
        abort();
    }
    free(twice);
    spec_free(again);
    diag_free(&d2);
    free(once);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    DiagSink d;
    diag_init(&d, NULL);
    SpecFile *f = spec_load_string("fuzz.mx", text, &d);
    check_load(f, &d);
    spec_free(f);
    diag_free(&d);

    if (memchr(data, '\0', size)) {
        int fd = memfd_create("fuzz.mx", 0);
        if (fd >= 0 && write(fd, data, size) == (ssize_t)size) {
            char path[64];
            snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
            diag_init(&d, NULL);
            f = spec_load_file(path, &d);
            check_load(f, &d);
            spec_free(f);
            diag_free(&d);
        }
        if (fd >= 0)
            close(fd);
    }
    free(text);
    return 0;
}
