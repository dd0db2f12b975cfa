/* fuzz_import.c - libFuzzer target: `mxc import` on an arbitrary configuration file.
 *
 * Upstream configs (config.json of mamba_ssm / HF, xlstm's YAML) are files other people
 * wrote; import parses them as JSON or as the YAML subset it knows, maps the settings and
 * checks the spec it would print. Input bytes are the file (given to cmd_import through a
 * memfd); any exit status is fine, crashes, sanitizer reports and leaks are not. Import
 * prints the spec and its messages: run with -close_fd_mask=3 (run.sh does). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "driver/driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("config.json", 0);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        char *argv[] = {"import", path, NULL};
        cmd_import(2, argv);
        fflush(stdout);
    }
    close(fd);
    return 0;
}
