#!/bin/bash
# Build a Q35-aware hvmloader for q35dm from Debian's xen source package.
#
#   seabios-patches/build.sh [WORKDIR]
#
# WORKDIR defaults to $Q35DM_FW_WORK, else /work/seabios-work. Steps:
#   1. installs the few build tools that are missing (as root, apt-get):
#      gcc make libc6-dev acpica-tools (iasl) dpkg-dev (dpkg-source) patch xz-utils
#   2. fetches the xen source package with apt-get source, using private
#      package lists (WORKDIR/apt) with deb-src lines for the mirror apt
#      already uses; never touches /etc/apt or the host's lists
#   3. unpacks it (Debian's own patches applied) into WORKDIR/build/xen-*,
#      applies xen/series with patch -p1, builds tools/firmware/hvmloader
#      only (no ./configure, no other Xen build dependencies)
#   4. copies the result to OUT (default WORKDIR/out): hvmloader,
#      hvmloader.debug (unstripped), dsdt_anycpu_q35.asl, BUILD-INFO
#   5. runs test/run.sh (host-side simulation + ACPI checks); RUN_TESTS=0 skips
#
# Environment: OUT, JOBS (make -j, default 2), XEN_VERSIONS (Debian versions of
# the xen source package to try, in order), MIRROR (Debian mirror URL),
# RUN_TESTS. SeaBIOS needs no change (see README.md), so none is built.
set -euo pipefail
S="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
W=${1:-${Q35DM_FW_WORK:-/work/seabios-work}}
mkdir -p "$W"
W=$(cd "$W" && pwd)
OUT=${OUT:-$W/out}
JOBS=${JOBS:-2}
# The e2e bed runs Debian's 4.17.7+13-g2445b30a44-0+deb12u1 (bookworm-security);
# 4.17.5+72-g01140da4e8-1 (bookworm) has the same hvmloader (identical .text/.data).
XEN_VERSIONS=${XEN_VERSIONS:-"4.17.7+13-g2445b30a44-0+deb12u1 4.17.5+72-g01140da4e8-1"}
t0=$EPOCHREALTIME
say() { echo "[fw-build +$(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME-$t0}")s] $*"; }
die() { echo "[fw-build] ERROR: $*" >&2; exit 1; }

# 1. tools
need=""
for t in gcc:gcc make:make iasl:acpica-tools dpkg-source:dpkg-dev patch:patch xz:xz-utils; do
    command -v ${t%%:*} >/dev/null || need="$need ${t#*:}"
done
[ -e /usr/include/stdio.h ] || need="$need libc6-dev"
if [ -n "$need" ]; then
    [ "$(id -u)" = 0 ] || die "missing:$need (install them or run as root)"
    say "apt-get install$need"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends $need > "$W/apt-install.log" 2>&1 ||
        { apt-get update > "$W/apt-update.log" 2>&1 &&
          apt-get install -y --no-install-recommends $need > "$W/apt-install.log" 2>&1; } ||
        { tail "$W/apt-install.log"; die "apt-get install failed"; }
fi

# 2. source package through private apt lists
srcs() { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; }
MIRROR=${MIRROR:-$(srcs | grep -v '^\s*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -1 | tr -d ' ' || true)}
MIRROR=${MIRROR%/}
[ -n "$MIRROR" ] || die "no Debian mirror found in the apt configuration (set MIRROR=)"
SECURITY=${SECURITY_MIRROR:-$(srcs | grep -v '^\s*#' | grep -oE 'https?://[^ ]+/debian-security/?( |$)' | head -1 | tr -d ' ' || true)}
SECURITY=${SECURITY%/}
SECURITY=${SECURITY:-${MIRROR}-security}
A=$W/apt
mkdir -p $A/etc/sources.list.d $A/lists/partial $A/cache/archives/partial
cat > $A/etc/sources.list.new <<EOF
deb-src $MIRROR bookworm main
deb-src $MIRROR bookworm-updates main
deb-src $SECURITY bookworm-security main
EOF
APTO="-o Dir::Etc::SourceList=$A/etc/sources.list -o Dir::Etc::SourceParts=$A/etc/sources.list.d
 -o Dir::State::Lists=$A/lists -o Dir::Cache=$A/cache -o APT::Sandbox::User=root"
if ! cmp -s $A/etc/sources.list.new $A/etc/sources.list || ! ls $A/lists/*Sources* >/dev/null 2>&1 ||
   [ -n "$(find $A/lists -maxdepth 1 -name '*Sources*' -mmin +1440 | head -1)" ]; then
    mv $A/etc/sources.list.new $A/etc/sources.list
    say "apt-get update (private source lists in $A)"
    apt-get $APTO update > $W/apt-update.log 2>&1 || { tail $W/apt-update.log; die "apt-get update failed"; }
fi
rm -f $A/etc/sources.list.new
mkdir -p $W/src
XENV=""
for v in $XEN_VERSIONS; do
    dsc=$W/src/xen_${v#*:}.dsc
    if [ ! -s "$dsc" ]; then
        apt-cache $APTO showsrc xen 2>/dev/null | grep -x "Version: $v" >/dev/null ||
            { say "xen $v: not in the lists"; continue; }
        say "apt-get source --download-only xen=$v"
        (cd $W/src && apt-get $APTO source --download-only "xen=$v") > $W/apt-source.log 2>&1 ||
            { say "xen $v: download failed: $(grep -m1 '^E:' $W/apt-source.log || echo see $W/apt-source.log)"
              rm -f $W/src/xen_${v%-*}*; continue; }
    fi
    XENV=$v
    break
done
[ -n "$XENV" ] || die "could not fetch any of: $XEN_VERSIONS"

# 3. unpack, patch, build
UPV=${XENV%-*}
T=$W/build/xen-$UPV
rm -rf "$T" && mkdir -p $W/build
say "dpkg-source -x xen_$XENV.dsc (Debian patches applied)"
dpkg-source -x --no-check $W/src/xen_$XENV.dsc "$T" > $W/dpkg-source.log 2>&1 ||
    { tail $W/dpkg-source.log; die "dpkg-source -x failed"; }
while read -r p; do
    case "$p" in ''|'#'*) continue;; esac
    say "patch -p1 < xen/$p"
    patch -d "$T" -p1 --batch --forward < "$S/xen/$p" > $W/patch.log 2>&1 ||
        { cat $W/patch.log; die "xen/$p does not apply to xen $XENV"; }
done < "$S/xen/series"

# Only hvmloader is built, so skip ./configure (it checks every tools
# dependency): a minimal config/Tools.mk and tools/config.h are enough.
cat > "$T/config/Tools.mk" <<'EOF'
# written by q35dm seabios-patches/build.sh: hvmloader only, no ./configure
IASL := iasl
AWK := awk
PYTHON := python3
CONFIG_ROMBIOS := n
CONFIG_SEABIOS := y
CONFIG_OVMF := n
CONFIG_IPXE := n
EOF
echo '/* written by q35dm seabios-patches/build.sh (no ./configure) */' > "$T/tools/config.h"
say "make -C tools/include xen-dir; make -C tools/firmware/hvmloader -j$JOBS"
make -C "$T/tools/include" xen-dir > $W/make.log 2>&1 &&
    make -C "$T/tools/firmware/hvmloader" -j"$JOBS" >> $W/make.log 2>&1 ||
    { grep -iE 'error|warning:' $W/make.log | tail -20; die "hvmloader build failed (see $W/make.log)"; }
H=$T/tools/firmware/hvmloader

# 4. results
mkdir -p "$OUT"
cp "$H/hvmloader" "$OUT/hvmloader.debug"
strip -o "$OUT/hvmloader" "$H/hvmloader"
cp "$H/dsdt_anycpu_q35.asl" "$OUT/dsdt_anycpu_q35.asl"
{
    echo "hvmloader for q35dm (Q35/ICH9 + i440FX), built $(date -u +%FT%TZ)"
    echo "xen source package: $XENV (from $([ -n "${XENV##*deb12u*}" ] && echo "$MIRROR bookworm" || echo "$SECURITY bookworm-security"))"
    echo "patches: $(grep -v '^#' "$S/xen/series" | tr '\n' ' ')"
    echo "compiler: $(gcc --version | head -1); iasl: $(iasl -v 2>/dev/null | grep -m1 -oE 'version [0-9]+')"
    (cd "$OUT" && sha256sum hvmloader hvmloader.debug dsdt_anycpu_q35.asl)
} > "$OUT/BUILD-INFO"
say "built $OUT/hvmloader ($(stat -c %s "$OUT/hvmloader") bytes) from xen $XENV"

# 5. host-side tests
if [ "${RUN_TESTS:-1}" = 1 ]; then
    Q35DM_FW_WORK=$W "$S/test/run.sh" "$T" || die "tests failed"
fi
say "done: use firmware_override=\"$OUT/hvmloader\" in the xl config"
