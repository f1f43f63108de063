# Cross toolchain for aarch64 Linux (Debian: gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross, qemu-user-static, libcmocka-dev:arm64 via multiarch).
# Usage: cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_ASM_COMPILER aarch64-linux-gnu-gcc)

# Tests run under user-mode emulation; ctest prefixes every test command.
#
# The run-time loader/libc is Debian's multiarch libc6:arm64 (/lib/aarch64-linux-gnu,
# pulled in by libcmocka0:arm64), so there is no path remapping ("-L /").
# Do NOT use "-L /usr/aarch64-linux-gnu" here: with libc6:arm64 installed, the
# cross ld.so (libc6-arm64-cross 2.36-8cross1) then searches
# /lib/aarch64-linux-gnu first, loads the multiarch libc.so.6 (2.36-9+debXXuN),
# and the mismatched pair hangs in the first pthread_create() (seen under
# qemu 7.2 on Debian 12).
set(CMAKE_CROSSCOMPILING_EMULATOR "qemu-aarch64-static;-L;/")

set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
# BOTH (not ONLY): arm64 multiarch packages such as libcmocka-dev:arm64 install
# to /usr/lib/aarch64-linux-gnu, outside the cross root.
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# pkg-config must only see arm64 .pc files (libcmocka-dev:arm64).
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")

set(CTRIO_CROSS ON CACHE BOOL "Cross-compiling ctrio (set by toolchain file)")
