#!/usr/bin/env bash
# Runs every q35dm test. As root it first installs the system packages the tests need
# (Debian 12): gcc + libxen-dev (ABI layout check against C), qemu-system-x86 (reference
# oracle), pciutils (lspci decoder). With CI=true a missing tool is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cc >/dev/null || need+=(gcc)
[ -f /usr/include/xen/hvm/ioreq.h ] || need+=(libxen-dev)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v lspci >/dev/null || need+=(pciutils)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "tests/run.sh: installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends "${need[@]}" >/dev/null || {
            apt-get update >/dev/null && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
        }
    elif [ "${CI:-}" = true ]; then
        echo "tests/run.sh: missing ${need[*]} and not root: cannot install (CI=true makes this a failure)" >&2
        exit 1
    else
        echo "tests/run.sh: warning: missing ${need[*]}; tests that need them will say so" >&2
    fi
fi

cargo test --workspace --all-targets "$@"
