/* link.c - turn the generated object and the runtime archive into a shared object.
 *
 * The system C compiler drives the linker: `cc -shared obj runtime.a -lm -lpthread` with a
 * version script that exports only PREFIX_* (the runtime's symbols are hidden anyway).
 * It is run directly with fork/exec, never through a shell, so paths need no quoting. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/backend.h"

bool backend_prefix_ok(const char *p)
{
    if (!p || !*p || (*p >= '0' && *p <= '9') || strlen(p) > 64) return false;
    for (; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return false;
    return true;
}

static bool run_command(char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "mxc: error: cannot start %s: %s\n", argv[0], strerror(errno));
        return false;
    }
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "mxc: error: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Split a space-separated flag string into argv entries (no quoting: flags only). */
static int split_flags(char *s, char **argv, int max)
{
    int n = 0;
    for (char *tok = strtok(s, " \t"); tok && n < max; tok = strtok(NULL, " \t")) argv[n++] = tok;
    return n;
}

bool backend_link(const char *obj_path, const char *runtime_archive, const char *prefix,
                  const char *so_path, const char *extra_flags)
{
    char script_path[] = "/tmp/mxc-exports-XXXXXX";
    int fd = mkstemp(script_path);
    if (fd < 0) {
        fprintf(stderr, "mxc: error: cannot create a temporary file: %s\n", strerror(errno));
        return false;
    }
    FILE *f = fdopen(fd, "w");
    fprintf(f, "{\n  global: %s_*;\n  local: *;\n};\n", prefix);
    fclose(f);

    char vs_flag[sizeof script_path + 32];
    snprintf(vs_flag, sizeof vs_flag, "-Wl,--version-script=%s", script_path);
    const char *cc = getenv("MXC_CC");
    if (!cc || !*cc) cc = MXC_CC;
    char *cc_copy = strdup(cc), *flags_copy = strdup(extra_flags ? extra_flags : "");
    char *argv[96];
    int n = split_flags(cc_copy, argv, 8);
    const char *fixed[] = {"-shared", "-fPIC", "-o", so_path, obj_path, runtime_archive,
                           vs_flag, "-Wl,-z,noexecstack", "-Wl,--no-undefined"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) argv[n++] = (char *)fixed[i];
    n += split_flags(flags_copy, argv + n, 64);
    argv[n++] = "-lm";
    argv[n++] = "-lpthread";
    argv[n] = NULL;

    bool ok = run_command(argv);
    if (!ok) fprintf(stderr, "mxc: error: linking %s failed (command: %s ...)\n", so_path, argv[0]);
    unlink(script_path);
    free(cc_copy);
    free(flags_copy);
    return ok;
}
