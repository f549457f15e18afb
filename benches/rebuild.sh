#!/bin/sh
# Incremental rebuild benchmark (issue 6): in one run, on a generated demo of
# SIZE (default 1GiB), time
#   1. a full build with an empty cache (it fills the cache),
#   2. a rebuild after changing one byte of one file of one driver package,
#      over the previous outputs (a workstation: the old artefacts are
#      replaced and deleted),
#   3. the same after another byte changed, into an empty output folder (a
#      CI runner: fresh checkout, cache restored),
#   4. a clean build of the same inputs with --no-cache,
# and check that the rebuild's outputs have the clean build's sha256.
# Prints the phase times of each build and the ratio rebuild / full build.
# Exit 1 when the outputs differ. Before each timed build the script waits
# for the file system to write back what earlier steps left in memory
# (`sync`, not timed): a nightly rebuild does not start while the previous
# build's files are still being written out, and no build should pay for
# another's writeback.
#
#   cargo build --release && benches/rebuild.sh [SIZE] [WORKDIR]
set -eu
size=${1:-1GiB}
work=${2:-bench-work/rebuild}
bin=${MEDIABUILD:-target/release/mediabuild}
rm -rf "$work"
mkdir -p "$work"
"$bin" demo "$work/demo" --size "$size" --no-build -q >/dev/null
recipe="$work/demo/recipe.yaml"
cache="$work/cache"
out="$work/demo/out"
driver="$work/demo/content/drivers/surface/Network/netadapter.sys"
# The hash cache does not trust time stamps younger than a second.
sleep 1.2
sync

now() { date +%s.%N; }
sums() { sha256sum "$out/demo-wtg.wim" "$out/demo-wtg.img" | cut -d' ' -f1 | tr '\n' ' '; }

t0=$(now)
"$bin" build "$recipe" -q --cache-dir "$cache" >"$work/full.txt"
t1=$(now)
# One byte in the middle of one driver file, same size.
off=$(( $(stat -c %s "$driver") / 2 ))
printf 'Z' | dd of="$driver" bs=1 seek="$off" conv=notrunc status=none
sleep 1.2
sync
t2=$(now)
"$bin" build "$recipe" -q --cache-dir "$cache" >"$work/rebuild.txt"
t3=$(now)
rebuilt=$(sums)
# CI-like: the output folder starts empty (its removal is not timed).
printf 'Y' | dd of="$driver" bs=1 seek="$((off + 1))" conv=notrunc status=none
rm -rf "$out"
sleep 1.2
sync
t6=$(now)
"$bin" build "$recipe" -q --cache-dir "$cache" >"$work/rebuild-ci.txt"
t7=$(now)
rebuilt=$(sums)
sync
t4=$(now)
"$bin" build "$recipe" -q --no-cache >"$work/clean.txt"
t5=$(now)
clean=$(sums)

for f in full rebuild rebuild-ci clean; do
  echo "== $f build"
  sed -n '/^phases:/,/^still to do/p' "$work/$f.txt" | grep -v '^still to do'
done
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" -v f="$t5" -v g="$t6" -v h="$t7" 'BEGIN {
  full = b - a; re = d - c; ci = h - g; cl = f - e;
  printf "full build (cold cache) %.2f s\nrebuild (one driver byte) %.2f s\nrebuild into an empty output folder %.2f s\nclean build (--no-cache) %.2f s\n", full, re, ci, cl;
  printf "rebuild / full = %.1f %%\nrebuild into an empty output folder / full = %.1f %%\n", 100 * re / full, 100 * ci / full }'
echo "rebuild sha256: $rebuilt"
echo "clean   sha256: $clean"
if [ "$rebuilt" = "$clean" ]; then echo "outputs identical: yes"; else echo "outputs identical: NO"; exit 1; fi
