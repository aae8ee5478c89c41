#!/usr/bin/env bash
# Builds the example plugins into plugins/examples/dist/ as components:
#   echo.wasm, echo-v2.wasm, replicate.wasm, misbehave.wasm — and echo-core.wasm, the
#   same echo as a bare core module (for the test that refuses core modules).
# Guests build for wasm32-unknown-unknown (no WASI imports at all) and are wrapped
# into components by switchyard-componentize (wit-component).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
guests=$target/wasm-guests
out=$here/examples/dist
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
if ! rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
  echo "build-examples: the wasm32-unknown-unknown target is not installed and could not be added" >&2
  exit 1
fi
(cd "$root" && cargo build -q -p switchyard-componentize)
componentize=$target/debug/switchyard-componentize
build() { CARGO_TARGET_DIR=$guests cargo build -q --release --locked --target wasm32-unknown-unknown \
            --manifest-path "$here/examples/Cargo.toml" "$@"; }
mkdir -p "$out"
build
release=$guests/wasm32-unknown-unknown/release
for guest in echo replicate misbehave; do
  "$componentize" "$release/$guest.wasm" "$out/$guest.wasm"
done
cp "$release/echo.wasm" "$out/echo-core.wasm"
build -p echo --features v2
"$componentize" "$release/echo.wasm" "$out/echo-v2.wasm"
