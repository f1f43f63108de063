#!/bin/sh
# run_code.sh PROBE PROGRAM [ARG...] -- runs one of the documentation's
# programs on the backend $CTRIO_BACKEND names (docs/CMakeLists.txt: the
# NAME@io_uring twins), as the unit tests do: exit 77 (skip) where that
# backend cannot start here, which PROBE (tests/backend_probe) tells and says
# why; else PROGRAM's own exit status. $CTRIO_DOCS_EMULATOR (a cross build's
# qemu) runs both.
probe=${1:?usage: run_code.sh PROBE PROGRAM [ARG...]}
shift
if ! why=$($CTRIO_DOCS_EMULATOR "$probe"); then
    echo "SKIP: CTRIO_BACKEND=${CTRIO_BACKEND:-}: $why"
    exit 77
fi
exec $CTRIO_DOCS_EMULATOR "$@"
