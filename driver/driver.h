/* driver.h - the `mxc` command line: subcommands build, ir, check, passes, run, import, tokenize. */
#ifndef MXC_DRIVER_H
#define MXC_DRIVER_H

/* Exit status: 0 success, 1 spec error or failed build, 2 usage error. */
enum { MXC_EXIT_OK = 0, MXC_EXIT_ERROR = 1, MXC_EXIT_USAGE = 2 };

int mxc_main(int argc, char **argv);

/* `mxc run` (run.c) and `mxc import` (import.c); argv[0] is the subcommand's name. */
int cmd_run(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_tokenize(int argc, char **argv); /* tokenize.c */
/* `mxc convert` (convert.c). */
int cmd_convert(int argc, char **argv);

/* A spec file, or a model folder whose config.json is imported into a spec first (driver.c);
 * NULL after reporting to `diag` or stderr. */
struct SpecFile;
struct DiagSink;
struct SpecFile *driver_load_spec(const char *path, struct DiagSink *diag);

#endif
