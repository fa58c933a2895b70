#!/usr/bin/env bash
# Cluster overhead on one machine (docs/CLUSTER.md): ingestion passages/s and queries/s with 1, 2 and 3 silos,
# against one process (rotor ingest + rotor cluster search --local). The silos share this machine's cores, so the
# figures show what the cluster costs, not a speed-up. Run it alone on the machine.
#
#   scripts/cluster-bench.sh [SOURCE.xml.bz2] [--seconds 60] [--clients 4] [--silos "1 2 3"] [--shards 6] [--queries Q.jsonl] [--no-build]
#
# Needs: PostgreSQL's initdb/pg_ctl (Debian postgresql), Orleans' scripts in src/Rotor.Cluster/sql, the shared data.
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCE=../shared/data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2
QUERIES=../shared/data/beir-scifact/queries_test.jsonl
SECONDS_Q=60; CLIENTS=4; SILOS="1 2 3"; SHARDS=6; BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_Q=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --silos) SILOS=$2; shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
    --queries) QUERIES=$2; shift 2 ;;
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

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "source: $SOURCE; queries: $QUERIES ($SECONDS_Q s, $CLIENTS clients, hybrid top 5)"

# One process: the baseline.
$ROTOR ingest wiki "$SOURCE" --out "$WORK/single" 2>/dev/null | grep "this run"
echo "one process search: $($ROTOR cluster search --local "$WORK/single" --queries "$QUERIES" --seconds "$SECONDS_Q" --clients "$CLIENTS" 2>/dev/null)"

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
  echo "  ingest: $($ROTOR cluster ingest wiki "$SOURCE" --shards "$SHARDS" --replicas "$REPLICAS" 2>/dev/null | tail -1)"
  echo "  search: $($ROTOR cluster search --queries "$QUERIES" --seconds "$SECONDS_Q" --clients "$CLIENTS" 2>/dev/null)"
  for p in "${PIDS[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
  PIDS=()
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null
  rm -rf "$WORK/pg" "$WORK"/silo*
done
