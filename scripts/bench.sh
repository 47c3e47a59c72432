#!/usr/bin/env bash
# The flashpolicy benchmark: builds release binaries, runs flashpolicy-loadgen
# against every engine, the kernel floor and the installed peers, and writes
# benches/results/<date>-<host>.{md,svg,json} (plus latest.md/latest.svg and the
# tables in benches/README-performance.md).
#
#   scripts/bench.sh            # the default suite (under 10 minutes on 2 cores)
#   scripts/bench.sh --smoke    # a few seconds; exits non-zero on any error (CI)
#   scripts/bench.sh --help     # every option
#
# Needs Linux, python3 and taskset (util-linux). Peers: scripts/peers-setup.sh.
set -euo pipefail
exec python3 "$(dirname "$0")/bench.py" "$@"
