#!/usr/bin/env bash
# Puts the ONNX Runtime CPU shared library (1.30.0) where the build finds it and prints its path.
#
# Order of preference:
#   1. $UNDERSTUDY_ORT_LIB, if set (a library you already have);
#   2. the cached copy in .ort/ (git-ignored);
#   3. `npm pack onnxruntime-node@1.30.0`, checked against a pinned sha256, and the library extracted.
# Idempotent: once cached it only checks that the file is there.
set -euo pipefail

ORT_VERSION=1.30.0
# sha256 of onnxruntime-node-1.30.0.tgz as served by the npm registry.
ORT_TGZ_SHA256=6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$root/.ort/$ORT_VERSION"
lib="$cache/libonnxruntime.so"

die() { echo "fetch-ort: $*" >&2; exit 1; }

if [ -n "${UNDERSTUDY_ORT_LIB:-}" ]; then
  [ -f "$UNDERSTUDY_ORT_LIB" ] || die "UNDERSTUDY_ORT_LIB=$UNDERSTUDY_ORT_LIB does not exist; unset it to download ONNX Runtime $ORT_VERSION with npm"
  echo "$UNDERSTUDY_ORT_LIB"
  exit 0
fi

if [ -s "$lib" ]; then
  echo "$lib"
  exit 0
fi

case "$(uname -m)" in
  x86_64|amd64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) die "no ONNX Runtime build for $(uname -s)/$(uname -m) in onnxruntime-node; set UNDERSTUDY_ORT_LIB to a libonnxruntime.so (>= 1.24) you have" ;;
esac
[ "$(uname -s)" = Linux ] || die "only Linux is supported by this script; set UNDERSTUDY_ORT_LIB to your ONNX Runtime library"
command -v npm >/dev/null || die "npm is not installed, and no cached library is in $cache. Install Node.js/npm, or set UNDERSTUDY_ORT_LIB to a libonnxruntime.so (>= 1.24)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-ort: downloading onnxruntime-node@$ORT_VERSION with npm pack (about 110 MB, once)" >&2
(cd "$tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null) \
  || die "npm pack onnxruntime-node@$ORT_VERSION failed (offline?). Set UNDERSTUDY_ORT_LIB to a libonnxruntime.so (>= 1.24) instead"
tgz="$tmp/onnxruntime-node-$ORT_VERSION.tgz"
got=$(sha256sum "$tgz" | cut -d' ' -f1)
[ "$got" = "$ORT_TGZ_SHA256" ] || die "checksum mismatch for $tgz: got $got, want $ORT_TGZ_SHA256"
member="package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
tar -xzf "$tgz" -C "$tmp" "$member" || die "$member not found in the tarball"
mkdir -p "$cache"
# Write then rename, so an interrupted run never leaves a half-written library behind.
cp "$tmp/$member" "$lib.tmp"
mv "$lib.tmp" "$lib"
echo "fetch-ort: cached $lib" >&2
echo "$lib"
