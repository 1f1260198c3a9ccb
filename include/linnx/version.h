/* linnx/version.h - the version of the headers and of the library that is running.
 *
 * The macros give the version of the headers a program was compiled with; lx_version() and
 * lx_version_number() that of the liblinnx actually loaded (SQLite's SQLITE_VERSION beside
 * sqlite3_libversion()). A program can check at start-up that they agree:
 *   if (lx_version_number() != LINNX_VERSION_NUMBER) ... headers and library differ
 * LINNX_VERSION_NUMBER is MAJOR * 1000000 + MINOR * 1000 + PATCH (0.1.0 -> 1000), so versions
 * compare as integers. The ABI changes only with the soname (liblinnx.so.<MAJOR> from 1.0 on;
 * before 1.0 a minor version may change it, and the CMake package accepts only the same minor).
 * CMakeLists.txt reads the project version from this file: it is the one place it is written.
 */
#ifndef LINNX_VERSION_H
#define LINNX_VERSION_H

#define LINNX_VERSION_MAJOR 0
#define LINNX_VERSION_MINOR 1
#define LINNX_VERSION_PATCH 0
#define LINNX_VERSION "0.1.0"
#define LINNX_VERSION_NUMBER (LINNX_VERSION_MAJOR * 1000000 + LINNX_VERSION_MINOR * 1000 + LINNX_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* The version of the loaded library: "0.1.0" (a static string) and its LINNX_VERSION_NUMBER. */
const char *lx_version(void);
int lx_version_number(void);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
