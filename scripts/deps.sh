#!/usr/bin/env bash
# Check (and, as root, install) the Debian packages needed to build and test ctrio.
#   scripts/deps.sh           native build, tests, sanitizers, benchmarks
#   scripts/deps.sh --cross   additionally the aarch64 cross toolchain + qemu
#   scripts/deps.sh --bench   additionally what only the benchmarks need (OpenSSL, Go)
#   scripts/deps.sh --docs    additionally what `make docs` and the docs_site test need
# Silent and fast when everything is already installed.
set -euo pipefail

cross=0
bench=0
docs=0
for arg in "$@"; do
    case "$arg" in
        --cross) cross=1 ;;
        --bench) bench=1 ;;
        --docs) docs=1 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "deps.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

# libssl-dev, openssl, ca-certificates: libctrio_tls and its tests; python3,
# python3-trio, curl, socat: peers nobody here wrote, for the interop tests.
# liburing-dev: bench/raw_uring_echo, the io_uring reference server.
# abigail-tools: abidiff for the ABI check (tests/abi_check.sh), abidw for
# the baseline in abi/.
pkgs=(cmake gcc make pkg-config libcmocka-dev libuv1-dev libboost-context-dev valgrind g++
      libssl-dev openssl ca-certificates python3 python3-trio curl socat liburing-dev
      abigail-tools)
if [ "$bench" = 1 ]; then
    # bench/tls_bench.sh: Go for its crypto/tls peer. Not in the default
    # list: `make test` must not install a Go toolchain.
    pkgs+=(golang-go)
fi
if [ "$docs" = 1 ]; then
    # docs/tools/build_docs.py: Sphinx (HTML and man builders, the C domain);
    # the benchmark plot: matplotlib; docs_site opens every page in chromium.
    # Not in the default list: `make test` must not install a browser (the
    # docs_site test is only registered where Sphinx and chromium are found).
    pkgs+=(python3-sphinx python3-matplotlib chromium)
fi
if [ "$cross" = 1 ]; then
    # libcmocka-dev:arm64 comes from Debian multiarch (needs the arm64 foreign
    # architecture); its .pc file lives in /usr/lib/aarch64-linux-gnu/pkgconfig.
    # libc6:arm64 is the run-time libc the tests use under qemu (see
    # cmake/aarch64-linux-gnu.cmake). libidn2-0:arm64: ctrio_getaddrinfo
    # dlopen()s libidn2.so.0 for non-ASCII host names (src/net/resolve.c) and
    # test_resolve expects it to be there, as it is natively. libssl-dev:arm64:
    # libctrio_tls and its tests under qemu (apt keeps it at the amd64
    # package's version: Multi-Arch: same).
    pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
          libcmocka-dev:arm64 libc6:arm64 libidn2-0:arm64 libssl-dev:arm64)
fi

installed() {
    local status
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
    [[ "$status" == *" ok installed" ]]
}

missing=()
for p in "${pkgs[@]}"; do
    installed "$p" || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

need_arm64=0
if [[ " ${missing[*]} " == *":arm64 "* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    need_arm64=1
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ctrio: missing Debian packages: ${missing[*]}" >&2
    echo "Install them with:" >&2
    [ "$need_arm64" = 1 ] && echo "  sudo dpkg --add-architecture arm64" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "ctrio: installing missing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
[ "$need_arm64" = 1 ] && dpkg --add-architecture arm64
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
