#!/bin/sh
# The build benchmark on real-shaped media: `mediabuild bench rebuild` (see
# docs/benchmarks.md). In one run, on a generated demo of SIZE (default 1GiB)
# with a 4,000-file driver store and a 10,000-file application, it times
# clean, first-with-cache, no-change and one-.inf rebuilds (over previous
# outputs and into an empty folder), verify and inspect, and wimlib-imagex
# capture of the same media tree; every rebuild must give the clean build's
# bytes. Extra arguments go to the command (e.g. --repeat 3 --fill 200000).
#
#   cargo build --release && benches/rebuild.sh [SIZE] [ARGS…]
set -eu
size=${1:-1GiB}
[ $# -gt 0 ] && shift
exec "${MEDIABUILD:-target/release/mediabuild}" bench rebuild --size "$size" --dir bench-work/rebuild "$@"
