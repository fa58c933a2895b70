#!/usr/bin/env bash
# Open time and resident memory of a large index file, and of its first queries: what lazy verification changes
# (docs/INDEX_FORMAT.md, "When each part is checked"). Builds, once, an index of N random vectors of 384 dimensions
# (ternary codes + kept float32 vectors, flat; N = 1,000,000 makes a 1.6 GB file), then runs each command in a fresh
# process under /usr/bin/time (wall seconds, maximum resident set: file-backed pages of the mapping count), 5 times.
#
#   [ROTOR="dotnet /path/to/rotor.dll"] bench/index/open-memory.sh [N] [WORK_DIR]
#   ROTOR defaults to this checkout's Release build; set it to another build (main's, eager verification) to compare.
#
# Measure alone on the machine, with a cold and a warm page cache both reported: the first pass after
# 'sync; echo 1 > /proc/sys/vm/drop_caches' (root) reads from disk, the others from the page cache.
set -euo pipefail
N=${1:-1000000}
WORK=${2:-/tmp/rotor-open-memory}
ROTOR=${ROTOR:-dotnet $(cd "$(dirname "$0")/../.." && pwd)/src/Rotor.Cli/bin/Release/net10.0/rotor.dll}
mkdir -p "$WORK"
IDX="$WORK/big-$N.rix"
if [ ! -f "$IDX" ]; then
  # Vectors as .npy (float32, (N, 384)), without numpy: uniform in [-1, 1) from a seeded generator.
  python3 - "$WORK/v-$N.npy" "$N" <<'PY'
import array, random, struct, sys
path, n, d = sys.argv[1], int(sys.argv[2]), 384
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (n, d)
header += " " * (63 - (10 + len(header)) % 64) + "\n"
rng = random.Random(1)
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    for start in range(0, n, 10000):
        m = min(10000, n - start)
        f.write(array.array("f", (rng.random() * 2 - 1 for _ in range(m * d))).tobytes())
PY
  $ROTOR index create "$IDX" --dim 384 --code Ternary
  $ROTOR index add "$IDX" "$WORK/v-$N.npy" --batch 100000
  rm -f "$WORK/v-$N.npy"
fi
Q='['$(python3 -c "import random; r=random.Random(7); print(','.join('%.4f' % (r.random()*2-1) for _ in range(384)))")']'
ls -l "$IDX"
run() {  # label, command...
  local label=$1; shift
  for i in 1 2 3 4 5; do
    /usr/bin/time -f "$label	%e s	%M KiB max resident" "$@" > /dev/null 2>> "$WORK/time.log" || { tail -3 "$WORK/time.log"; exit 1; }
    tail -1 "$WORK/time.log"
  done
}
: > "$WORK/time.log"
run "open (index stats)"          $ROTOR index stats "$IDX"
run "open + 1 exact query"        $ROTOR index search "$IDX" --query "$Q" -k 10
run "open + 1 query, rescore x4"  $ROTOR index search "$IDX" --query "$Q" -k 10 --rescore 4
# Only builds that have them (lazy verification came with both).
if $ROTOR index verify --help > /dev/null 2>&1; then
  run "full check (index verify)" $ROTOR index verify "$IDX"
  $ROTOR info "$IDX"
fi
