/* cache.c - compiled models kept between runs (see cache.h). */
#include "driver/cache.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "config.h"
#include "driver/driver.h"

#define MANIFEST "manifest"
#define MANIFEST_MAGIC "mxc-cache 1\n"

/* FNV-1a, 64 bits: names entries and checks objects against their manifest (a guard against
 * truncation and corruption, not against a hostile cache folder, which is the user's own). */
static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3u;
    return h;
}

static const uint64_t fnv_offset = 0xcbf29ce484222325u;

/* The checksum of a whole file; false if it cannot be read. */
static bool file_checksum(const char *path, uint64_t *out, int64_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    unsigned char buf[1 << 16];
    uint64_t h = fnv_offset;
    int64_t total = 0;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        h = fnv1a(h, buf, n);
        total += (int64_t)n;
    }
    bool ok = !ferror(f);
    fclose(f);
    *out = h;
    if (size) *size = total;
    return ok;
}

static bool cache_root(char *out, size_t len)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && *xdg == '/')
        n = snprintf(out, len, "%s/mxc", xdg);
    else if (home && *home)
        n = snprintf(out, len, "%s/.cache/mxc", home);
    else
        return false;
    return n > 0 && (size_t)n < len;
}

/* mkdir -p of the cache root. */
static bool make_root(char *root, size_t len)
{
    if (!cache_root(root, len)) {
        fprintf(stderr, "mxc: error: no cache folder: set XDG_CACHE_HOME or HOME\n");
        return false;
    }
    for (char *p = root + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        bool ok = mkdir(root, 0755) == 0 || errno == EEXIST;
        *p = '/';
        if (!ok) break;
    }
    if (mkdir(root, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "mxc: error: cannot create the cache folder %s: %s\n", root, strerror(errno));
        return false;
    }
    return true;
}

/* Appends one fact to the key (cut at the buffer's end: the key then covers less, and a
 * manifest holding the same cut text still describes the same inputs). */
static void key_line(CacheKey *k, size_t *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void key_line(CacheKey *k, size_t *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(k->text + *at, sizeof k->text - *at, fmt, ap);
    va_end(ap);
    if (n > 0) *at += (size_t)n < sizeof k->text - *at ? (size_t)n : sizeof k->text - 1 - *at;
}

bool cache_key_make(CacheKey *k, const char *input, const char *const *options)
{
    memset(k, 0, sizeof *k);
    size_t at = 0;
    char exe[PATH_MAX], config[PATH_MAX];
    struct stat sb;
    key_line(k, &at, "mxc %s, LLVM %s\n", PACKAGE_VERSION, MXC_LLVM_VERSION);
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        if (stat(exe, &sb) == 0)
            key_line(k, &at, "compiler %s %lld %lld\n", exe, (long long)sb.st_size,
                     (long long)sb.st_mtime);
    }
    char *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
    uint64_t fh = fnv1a(fnv_offset, features, strlen(features));
    key_line(k, &at, "cpu %s features %016llx\n", cpu, (unsigned long long)fh);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    for (int i = 0; options && options[i]; i++) {
        key_line(k, &at, "option %s\n", options[i]);
        /* An option naming a file (the runtime archive) keys on that file's identity too. */
        if (stat(options[i], &sb) == 0 && S_ISREG(sb.st_mode))
            key_line(k, &at, "  file %lld %lld\n", (long long)sb.st_size, (long long)sb.st_mtime);
    }
    /* The input's text: a spec, or the config.json of a model folder. */
    const char *text = input;
    if (stat(input, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(config, sizeof config, "%s/config.json", input);
        text = config;
    }
    uint64_t ih;
    int64_t isize;
    if (!file_checksum(text, &ih, &isize)) {
        fprintf(stderr, "mxc: error: cannot read %s: %s\n", text, strerror(errno));
        return false;
    }
    char where[PATH_MAX];
    key_line(k, &at, "input %s %lld %016llx\n", realpath(input, where) ? where : input,
             (long long)isize, (unsigned long long)ih);
    k->hash = fnv1a(fnv_offset, k->text, at);
    return true;
}

static void entry_path(const char *root, const CacheKey *k, char *out, size_t len)
{
    snprintf(out, len, "%s/%016llx", root, (unsigned long long)k->hash);
}

/* The manifest of entry `dir`: the key text, then "object NAME SIZE CHECKSUM". */
static bool manifest_matches(const char *dir, const CacheKey *k, char *so, size_t so_len)
{
    char path[PATH_MAX + 64], name[256];
    snprintf(path, sizeof path, "%s/" MANIFEST, dir);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    static char text[sizeof k->text + 512];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    size_t head = strlen(MANIFEST_MAGIC), klen = strlen(k->text);
    if (n < head + klen || memcmp(text, MANIFEST_MAGIC, head) != 0 ||
        memcmp(text + head, k->text, klen) != 0)
        return false;
    long long size;
    unsigned long long sum;
    if (sscanf(text + head + klen, "object %255s %lld %llx", name, &size, &sum) != 3 ||
        strchr(name, '/'))
        return false;
    snprintf(so, so_len, "%s/%s", dir, name);
    uint64_t have;
    int64_t have_size;
    return file_checksum(so, &have, &have_size) && have_size == size && have == sum;
}

bool cache_find(const CacheKey *k, char *so, size_t so_len)
{
    char root[PATH_MAX], dir[PATH_MAX + 32];
    if (!cache_root(root, sizeof root)) return false;
    entry_path(root, k, dir, sizeof dir);
    return manifest_matches(dir, k, so, so_len);
}

/* rm -r of an entry or build folder: plain files only, one level. */
static void remove_entry(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[PATH_MAX + 300];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

static bool write_manifest(const char *dir, const CacheKey *k, const char *so)
{
    uint64_t sum;
    int64_t size;
    if (!file_checksum(so, &sum, &size)) return false;
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/" MANIFEST, dir);
    FILE *f = fopen(path, "w");
    if (!f) return false;
    const char *name = strrchr(so, '/');
    fprintf(f, MANIFEST_MAGIC "%sobject %s %lld %llx\n", k->text, name ? name + 1 : so,
            (long long)size, (unsigned long long)sum);
    return fclose(f) == 0;
}

int cache_build(const CacheKey *k, CacheBuildFn build, void *ctx, char *so, size_t so_len)
{
    char root[PATH_MAX], tmp[PATH_MAX + 32], dir[PATH_MAX + 32], built[PATH_MAX + 64];
    if (!make_root(root, sizeof root)) return MXC_EXIT_ERROR;
    snprintf(tmp, sizeof tmp, "%s/.build-XXXXXX", root);
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "mxc: error: cannot create %s: %s\n", tmp, strerror(errno));
        return MXC_EXIT_ERROR;
    }
    int rc = build(ctx, tmp, built, sizeof built);
    if (rc == 0 && !write_manifest(tmp, k, built)) {
        fprintf(stderr, "mxc: error: cannot write the cache manifest in %s\n", tmp);
        rc = MXC_EXIT_ERROR;
    }
    if (rc != 0) {
        remove_entry(tmp);
        return rc;
    }
    entry_path(root, k, dir, sizeof dir);
    /* A stale or corrupt entry under this key goes first, aside and then away. */
    struct stat sb;
    if (stat(dir, &sb) == 0 && !manifest_matches(dir, k, so, so_len)) {
        char trash[PATH_MAX + 32];
        snprintf(trash, sizeof trash, "%s/.trash-XXXXXX", root);
        if (mkdtemp(trash) && rename(dir, trash) == 0) {
            remove_entry(trash);
        } else {
            rmdir(trash);
        }
    }
    if (rename(tmp, dir) != 0) {
        /* Another process renamed its complete entry into place first: use that one. */
        remove_entry(tmp);
        if (!manifest_matches(dir, k, so, so_len)) {
            fprintf(stderr, "mxc: error: cannot store the compiled model in %s: %s\n", dir,
                    strerror(errno));
            return MXC_EXIT_ERROR;
        }
        return 0;
    }
    return manifest_matches(dir, k, so, so_len) ? 0 : MXC_EXIT_ERROR;
}

/* --- mxc cache ------------------------------------------------------------------------------ */

static const char cache_usage[] =
    "usage: mxc cache list|clear\n"
    "The compiled models that `mxc run` keeps (in $XDG_CACHE_HOME/mxc, else ~/.cache/mxc):\n"
    "  list    one line per entry: key, size of the object, when built, what it was built from\n"
    "  clear   remove every entry\n";

static bool is_entry_name(const char *name)
{
    if (strlen(name) != 16) return false;
    for (const char *p = name; *p; p++)
        if (!strchr("0123456789abcdef", *p)) return false;
    return true;
}

int cmd_cache(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "list") != 0 && strcmp(argv[1], "clear") != 0)) {
        bool help = argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
        fputs(cache_usage, help ? stdout : stderr);
        return help ? MXC_EXIT_OK : MXC_EXIT_USAGE;
    }
    bool clear = strcmp(argv[1], "clear") == 0;
    char root[PATH_MAX];
    if (!cache_root(root, sizeof root)) {
        fprintf(stderr, "mxc cache: error: no cache folder: set XDG_CACHE_HOME or HOME\n");
        return MXC_EXIT_ERROR;
    }
    DIR *d = opendir(root);
    if (!d) {
        if (clear || errno == ENOENT) {
            if (clear) printf("mxc cache: %s is empty\n", root);
            return MXC_EXIT_OK;
        }
        fprintf(stderr, "mxc cache: error: cannot read %s: %s\n", root, strerror(errno));
        return MXC_EXIT_ERROR;
    }
    int count = 0;
    struct dirent *e;
    char dir[PATH_MAX + 300], path[PATH_MAX + 320], line[PATH_MAX + 64];
    while ((e = readdir(d)) != NULL) {
        bool entry = is_entry_name(e->d_name);
        bool leftover = strncmp(e->d_name, ".build-", 7) == 0 || strncmp(e->d_name, ".trash-", 7) == 0;
        if (!entry && !(clear && leftover)) continue;
        snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
        if (clear) {
            remove_entry(dir);
            count += entry;
            continue;
        }
        /* list: the manifest's input line and object line */
        snprintf(path, sizeof path, "%s/" MANIFEST, dir);
        FILE *f = fopen(path, "r");
        char input[PATH_MAX + 64] = "?", object[300] = "?";
        long long size = 0;
        while (f && fgets(line, sizeof line, f)) {
            if (strncmp(line, "input ", 6) == 0) sscanf(line + 6, "%4095s", input);
            if (strncmp(line, "object ", 7) == 0) sscanf(line + 7, "%299s %lld", object, &size);
        }
        if (f) fclose(f);
        struct stat sb;
        char when[32] = "?";
        if (stat(dir, &sb) == 0) strftime(when, sizeof when, "%Y-%m-%d %H:%M", localtime(&sb.st_mtime));
        printf("%s  %8lld bytes  %s  %s\n", e->d_name, size, when, input);
        count++;
    }
    closedir(d);
    if (clear)
        printf("mxc cache: removed %d entr%s from %s\n", count, count == 1 ? "y" : "ies", root);
    else if (count == 0)
        printf("mxc cache: no entries in %s\n", root);
    return MXC_EXIT_OK;
}
