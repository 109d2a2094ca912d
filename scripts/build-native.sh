#!/usr/bin/env bash
# Builds luo's native parts with the machine's gcc:
#   - native/preload/libluo-preload.so, the LD_PRELOAD shim that serves /dev/liveupdate from
#     `luo serve` (docs/protocol.md);
#   - the C conformance programs in native/conformance/ (against native/include/linux/liveupdate.h).
# Usage: bash scripts/build-native.sh [OUTDIR]     (default: native/build)
# Needs gcc (Debian: apt-get install gcc libc6-dev). Exits non-zero with a message when it cannot build.
set -euo pipefail
shopt -s nullglob
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/native/build}"
CC="${CC:-gcc}"
if ! command -v "$CC" >/dev/null 2>&1; then
  echo "luo: build-native: '$CC' not found; the LD_PRELOAD shim needs a C compiler (apt-get install gcc libc6-dev)" >&2
  exit 1
fi
mkdir -p "$out"
warn=(-Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-stringop-truncation)
# the shim: only its interposed symbols are exported
"$CC" -std=gnu11 -O2 -g -fPIC -shared -fvisibility=hidden "${warn[@]}" \
  -o "$out/libluo-preload.so.tmp" "$root/native/preload/luo_preload.c" -ldl -lpthread
mv -f "$out/libluo-preload.so.tmp" "$out/libluo-preload.so"
# the conformance programs (in a source checkout), dynamically linked (LD_PRELOAD does not reach
# static binaries)
for src in "$root"/native/conformance/*.c; do
  name="$(basename "$src" .c)"
  "$CC" -std=gnu11 -O2 -g "${warn[@]}" -Wno-unused-result -Wno-format-truncation -Wno-empty-body -I "$root/native/include" \
    -o "$out/$name.tmp" "$src"
  mv -f "$out/$name.tmp" "$out/$name"
done
echo "luo: native parts built in $out" >&2
