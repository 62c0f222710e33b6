#!/usr/bin/env bash
# Every Catch test case must reach CTest as a test of its own. catch_discover_tests passes the
# names through a CMake list, where `;` splits a name in two and an unbalanced `[` joins every
# name after it into one: those tests then match nothing and "pass" without running (34 core
# tests did, unseen, until this check). So no test name may hold `;`, `[` or `]`.
#
#   test_names.sh TEST_BINARY...
set -u
bad=0
for t in "$@"; do
  while IFS= read -r name; do
    case "$name" in
      *\;* | *\[* | *\]*) echo "$(basename "$t"): \"$name\" holds ; [ or ]: rename it"; bad=1 ;;
    esac
  done < <("$t" --list-test-names-only)
done
[ "$bad" -eq 0 ] && echo "test names: every one of $# binaries' tests reaches CTest on its own"
exit "$bad"
