#!/bin/sh
# header_split.sh CC SOURCE_DIR: ctrio.h is what a server includes, and
# ctrio_testing.h holds the test-only API (trio.testing's share: issue #13).
#  1. ctrio.h, preprocessed (comments gone, macros kept), declares none of
#     the testing names: ctrio_testing_*, memory and lockstep streams, the
#     fake network, Sequencer, the checkpoint counters, wait_all_tasks_blocked,
#     the mock clock's jump;
#  2. ctrio_testing.h declares each name listed below (so that a name
#     removed from both headers does not pass unseen);
#  3. ctrio_testing.h compiles on its own and after ctrio.h, warnings as
#     errors, in strict C11.
set -u
CC=$1 SRC=$2
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

CFLAGS="-std=c11 -Wall -Wextra -Werror -pedantic -Wstrict-prototypes -I $SRC/include"

# Families: any name with these prefixes belongs in ctrio_testing.h.
FAMILIES='ctrio_testing_|ctrio_memory_stream|ctrio_lockstep_stream|ctrio_fake_|CTRIO_FAKE_|ctrio_sequencer|ctrio_wait_all_tasks_blocked|ctrio_checkpoint_counts|ctrio_task_checkpoint_counts|ctrio_mock_clock_jump'
NAMES='ctrio_mock_clock_jump ctrio_checkpoint_counts ctrio_task_checkpoint_counts
ctrio_wait_all_tasks_blocked ctrio_testing_cancel_at_checkpoint ctrio_testing_cancel_fired
ctrio_testing_run_checkpoints ctrio_testing_fail_syscall_at ctrio_testing_syscall_fault_fired
ctrio_testing_run_syscalls ctrio_sequencer ctrio_sequencer_init ctrio_sequencer_enter
ctrio_sequencer_leave ctrio_memory_stream_pair ctrio_lockstep_stream_pair ctrio_fake_net
ctrio_fake_attempt ctrio_fake_lookup CTRIO_FAKE_PENDING ctrio_fake_net_new ctrio_fake_net_free
ctrio_fake_net_add_host ctrio_fake_net_set_connect ctrio_fake_net_set_family
ctrio_fake_net_fail_setsockopt ctrio_fake_net_install ctrio_fake_net_uninstall
ctrio_fake_net_attempt_count ctrio_fake_net_attempt ctrio_fake_net_find_attempt
ctrio_fake_net_lookup_count ctrio_fake_net_last_lookup'

printf '#include <ctrio.h>\n' >"$T/server.c"
printf '#include <ctrio_testing.h>\n' >"$T/alone.c"
printf '#include <ctrio.h>\n#include <ctrio_testing.h>\n' >"$T/after.c"

# shellcheck disable=SC2086 # CFLAGS are words
"$CC" $CFLAGS -E -P -dD "$T/server.c" >"$T/server.i" || fail "ctrio.h does not preprocess"
found=$(grep -oE "\\b($FAMILIES)[A-Za-z0-9_]*" "$T/server.i" | sort -u | tr '\n' ' ')
[ -z "$found" ] || fail "ctrio.h declares test-only names: $found"

# shellcheck disable=SC2086
"$CC" $CFLAGS -E -P -dD "$T/alone.c" >"$T/alone.i" || fail "ctrio_testing.h does not preprocess"
for n in $NAMES; do
    grep -qE "\\b$n\\b" "$T/alone.i" || fail "ctrio_testing.h does not declare $n"
done

for f in alone after; do
    # shellcheck disable=SC2086
    "$CC" $CFLAGS -fsyntax-only "$T/$f.c" || fail "ctrio_testing.h does not compile ($f)"
done
echo "ok: ctrio.h declares no test-only name; ctrio_testing.h declares $(echo "$NAMES" | wc -w) and compiles alone and after ctrio.h"
