#!/usr/bin/env bash
# The project's full test suite, as CI runs it: set-up, formatting, lints, every crate's tests
# (release mode: the training tests need the speed), the no_std build for the Cortex-M4F, and
# the firmware demo under QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings
echo "== cargo test"
cargo test --workspace --release
echo "== infer-core tests again in debug (overflow checks on: the hostile-input test must not overflow)"
cargo test -p infer-core
echo "== infer-core for thumbv7em-none-eabihf (no_std, no alloc)"
cargo build -p infer-core --release --target thumbv7em-none-eabihf
echo "== firmware-demo: build for the STM32F405, run under QEMU, compare with the host's predictions"
bash scripts/firmware.sh
