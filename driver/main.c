/* main.c - entry point of the mxc compiler; all the work is in driver.c. */
#include "driver/driver.h"

int main(int argc, char **argv) { return mxc_main(argc, argv); }
