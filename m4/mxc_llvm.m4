dnl MXC_CHECK_LLVM(MAJOR)
dnl Find llvm-config for LLVM MAJOR (llvm-config-MAJOR, then llvm-config), or take the one
dnl given with --with-llvm-config=PATH. Sets LLVM_CFLAGS, LLVM_LIBS, LLVM_LDFLAGS.
AC_DEFUN([MXC_CHECK_LLVM], [
  AC_ARG_WITH([llvm-config],
    [AS_HELP_STRING([--with-llvm-config=PATH], [llvm-config of LLVM $1 to use])],
    [LLVM_CONFIG="$withval"], [LLVM_CONFIG=""])
  AS_IF([test -z "$LLVM_CONFIG"],
    [AC_PATH_PROGS([LLVM_CONFIG], [llvm-config-$1 llvm-config], [])])
  AS_IF([test -z "$LLVM_CONFIG" || ! test -x "$LLVM_CONFIG"],
    [AC_MSG_ERROR([LLVM $1 not found: install the Debian package llvm-$1-dev or pass --with-llvm-config=PATH])])
  AC_MSG_CHECKING([LLVM version of $LLVM_CONFIG])
  llvm_version=`$LLVM_CONFIG --version`
  AC_MSG_RESULT([$llvm_version])
  AS_CASE([$llvm_version], [$1.*], [],
    [AC_MSG_ERROR([LLVM $1 is required but $LLVM_CONFIG is version $llvm_version (install llvm-$1-dev or pass --with-llvm-config=PATH)])])
  LLVM_CFLAGS=`$LLVM_CONFIG --cflags`
  LLVM_LDFLAGS=`$LLVM_CONFIG --ldflags`
  LLVM_LIBS=`$LLVM_CONFIG --libs core analysis target passes native`
  LLVM_VERSION="$llvm_version"
  AC_SUBST([LLVM_VERSION])
  AC_SUBST([LLVM_CFLAGS])
  AC_SUBST([LLVM_LDFLAGS])
  AC_SUBST([LLVM_LIBS])
  save_CFLAGS="$CFLAGS"; save_LIBS="$LIBS"; save_LDFLAGS="$LDFLAGS"
  CFLAGS="$CFLAGS $LLVM_CFLAGS"; LDFLAGS="$LDFLAGS $LLVM_LDFLAGS"; LIBS="$LLVM_LIBS $LIBS"
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <llvm-c/Core.h>
#include <llvm-c/Transforms/PassBuilder.h>]],
                                  [[LLVMContextRef c = LLVMContextCreate(); LLVMContextDispose(c);
                                    (void)LLVMRunPasses;]])],
    [], [AC_MSG_ERROR([cannot link a program against LLVM $1 from $LLVM_CONFIG])])
  CFLAGS="$save_CFLAGS"; LIBS="$save_LIBS"; LDFLAGS="$save_LDFLAGS"
])
