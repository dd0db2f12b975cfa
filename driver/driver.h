/* driver.h - the `mxc` command line: subcommands build, ir, check, passes. */
#ifndef MXC_DRIVER_H
#define MXC_DRIVER_H

/* Exit status: 0 success, 1 spec error or failed build, 2 usage error. */
enum { MXC_EXIT_OK = 0, MXC_EXIT_ERROR = 1, MXC_EXIT_USAGE = 2 };

int mxc_main(int argc, char **argv);

#endif
