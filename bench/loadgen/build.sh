#!/usr/bin/env bash
# Build the native registration load generator into bench/loadgen/build/registration_load.
#
# Installs the Debian packages it needs when they are missing (as root, with apt-get), then
# compiles with make, which rebuilds only what changed: running it again is cheap. Prints the
# binary's path as its last line on stdout. Exits 3 when the packages are missing and cannot
# be installed here (no apt-get, or not root), so that callers can skip instead of failing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
packages=(
  g++ make pkg-config
  libgrpc++-dev libprotobuf-dev libsodium-dev
  protobuf-compiler protobuf-compiler-grpc
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done

if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "loadgen: missing packages (${missing[*]}) and no apt-get to install them" >&2
    exit 3
  fi
  if [[ "$(id -u)" != 0 ]]; then
    echo "loadgen: missing packages (${missing[*]}); installing them needs root" >&2
    exit 3
  fi
  echo "loadgen: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  install=(apt-get install -y --no-install-recommends "${missing[@]}")
  # A machine whose package lists are missing or stale does not know the package
  # names yet: refresh them once, then try again.
  if ! "${install[@]}" >&2; then
    apt-get update >&2 || { echo "loadgen: apt-get update failed" >&2; exit 3; }
    "${install[@]}" >&2 || { echo "loadgen: apt-get install failed" >&2; exit 3; }
  fi
fi

make --no-print-directory -C "$here" -j"$(nproc)" >&2
echo "$here/build/registration_load"
