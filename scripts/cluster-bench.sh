#!/usr/bin/env bash
# Cluster overhead on one machine (docs/CLUSTER.md): ingestion passages/s and queries/s with 1, 2 and 3 silos,
# against one process (rotor ingest + rotor cluster search --local). The silos share this machine's cores, so the
# figures show what the cluster costs, not a speed-up. Run it alone on the machine.
#
#   scripts/cluster-bench.sh [SOURCE.xml.bz2] [--seconds 60] [--clients 4] [--silos "1 2 3"] [--shards 6] [--queries Q.jsonl]
#                            [--documents N] [--no-build]
#
# --documents N ingests the first N pages of SOURCE only (a cut copy), for a quick check that every step runs:
#   scripts/cluster-bench.sh --documents 12 --seconds 2 --clients 1 --silos "1 2"
# Needs: PostgreSQL's initdb/pg_ctl (Debian postgresql), Orleans' scripts in src/Rotor.Cluster/sql, the shared data,
# python3 (for --documents).
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCE=../shared/data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2
QUERIES=../shared/data/beir-scifact/queries_test.jsonl
SECONDS_Q=60; CLIENTS=4; SILOS="1 2 3"; SHARDS=6; BUILD=1; DOCUMENTS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_Q=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --silos) SILOS=$2; shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
    --queries) QUERIES=$2; shift 2 ;;
    --documents) DOCUMENTS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -*) echo "cluster-bench: unknown option $1" >&2; exit 2 ;;
    *) SOURCE=$1; shift ;;
  esac
done
[ -f "$SOURCE" ] || { echo "cluster-bench: $SOURCE not found" >&2; exit 2; }
[ -f "$QUERIES" ] || { echo "cluster-bench: $QUERIES not found" >&2; exit 2; }
PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort | tail -1)")
[ -x "$PGBIN/initdb" ] || { echo "cluster-bench: PostgreSQL's initdb not found (apt-get install postgresql)" >&2; exit 2; }

[ "$BUILD" = 1 ] && dotnet build src/Rotor.Cli -c Release -v q -nologo >/dev/null
ROTOR="dotnet src/Rotor.Cli/bin/Release/net10.0/rotor.dll"
WORK=$(mktemp -d /tmp/rotor-cluster-bench.XXXXXX)
AS=(); [ "$(id -u)" = 0 ] && { chown postgres "$WORK"; AS=(runuser -u postgres --); }
PORT=$((20000 + RANDOM % 20000))
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# run NAME COMMAND...: the command's standard output; on failure, the end of its error output, and the script stops.
run() {
  local name=$1; shift
  if ! "$@" 2>"$WORK/$name.err"; then
    echo "cluster-bench: $name failed: $*" >&2; tail -20 "$WORK/$name.err" >&2; exit 1
  fi
}

if [ "$DOCUMENTS" -gt 0 ]; then
  # The dump's header, its first N pages and the closing tag, compressed again.
  python3 - "$SOURCE" "$WORK/source.xml.bz2" "$DOCUMENTS" <<'PY'
import bz2, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with bz2.open(src, "rt", encoding="utf-8") as f, bz2.open(dst, "wt", encoding="utf-8") as out:
    pages = 0
    for line in f:
        if line.strip() == "</page>": pages += 1
        out.write(line)
        if pages == n: break
    out.write("</mediawiki>\n")
PY
  SOURCE=$WORK/source.xml.bz2
fi

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "source: $SOURCE$([ "$DOCUMENTS" -gt 0 ] && echo " (first $DOCUMENTS pages)"); queries: $QUERIES ($SECONDS_Q s, $CLIENTS clients, hybrid top 5)"

# One process: the baseline.
OUT=$(run ingest $ROTOR ingest wiki "$SOURCE" --out "$WORK/single")
echo "one process ingest: $(grep "this run" <<<"$OUT")"
OUT=$(run search $ROTOR cluster search --local "$WORK/single" --queries "$QUERIES" --seconds "$SECONDS_Q" --clients "$CLIENTS")
echo "one process search: $OUT"

for N in $SILOS; do
  "${AS[@]}" "$PGBIN/initdb" -D "$WORK/pg" -U rotor --auth=trust -E UTF8 --no-sync >/dev/null
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg" -w -l "$WORK/pg.log" -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1" start >/dev/null
  export ROTOR_CLUSTER_POSTGRES="Host=127.0.0.1;Port=$PORT;Username=rotor;Database=postgres"
  PIDS=()
  for i in $(seq 1 "$N"); do
    $ROTOR cluster silo --name "b$i" --data "$WORK/silo$i" --silo-port $((PORT + 10 + i)) --gateway-port $((PORT + 30 + i)) >"$WORK/silo$i.log" 2>&1 &
    PIDS+=($!)
  done
  for i in $(seq 1 "$N"); do
    for _ in $(seq 1 120); do grep -q "up at" "$WORK/silo$i.log" && break; sleep 1; done
  done
  REPLICAS=$(( N < 2 ? 1 : 2 ))
  echo "$N silo(s), $SHARDS shards x $REPLICAS replicas:"
  OUT=$(run "cluster-ingest-$N" $ROTOR cluster ingest wiki "$SOURCE" --shards "$SHARDS" --replicas "$REPLICAS")
  echo "  ingest: $(tail -1 <<<"$OUT")"
  OUT=$(run "cluster-search-$N" $ROTOR cluster search --queries "$QUERIES" --seconds "$SECONDS_Q" --clients "$CLIENTS")
  echo "  search: $OUT"
  for p in "${PIDS[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
  PIDS=()
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null
  rm -rf "$WORK/pg" "$WORK"/silo*
done
