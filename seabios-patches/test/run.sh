#!/bin/bash
# Host-side checks of the patched hvmloader, no Xen needed:
#  1. builds sim.c against the patched tree (the real pci.c, e820.c, pir.c,
#     libacpi build.c/static_tables.c and the generated DSDTs) and runs the
#     scenarios q35, q35-bigmem, q35-hole, i440fx: chipset register writes,
#     MMCONFIG placement, BAR assignment, bridges, E820, $PIR;
#  2. disassembles the ACPI tables each scenario built (iasl -d) and checks
#     FADT, MCFG and the DSDT (_PRT against Xen's INTx formula, links, _S5,
#     no ACPI PCI hot-plug, motherboard resources);
#  3. evaluates the Q35 DSDT with acpiexec (acpi_info regions replaced by the
#     values the scenario produced): PCI0._CRS, MCFR._CRS, _OSC, _PIC/_PRT.
#
# usage: test/run.sh [XEN_SRC]
#   XEN_SRC: a patched xen source tree in which build.sh built hvmloader
#   (default: the tree build.sh leaves in ${Q35DM_FW_WORK:-/work/seabios-work}/build)
# Needs gcc, python3, iasl and acpiexec (acpica-tools). Exit 0 = all passed.
set -uo pipefail
T="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
W=${Q35DM_FW_WORK:-/work/seabios-work}
X=${1:-$(ls -d "$W"/build/xen-*/ 2>/dev/null | head -1)}
X=${X%/}
H=$X/tools/firmware/hvmloader
[ -f "$H/dsdt_anycpu_q35.c" ] || { echo "no built hvmloader tree at '$X' (run build.sh first)"; exit 2; }
for t in gcc python3 iasl acpiexec; do
    command -v $t >/dev/null || { echo "missing $t (apt-get install gcc python3 acpica-tools)"; exit 2; }
done
B=$(mktemp -d "${TMPDIR:-/tmp}/q35fw-test.XXXXXX")
trap 'rm -rf "$B"' EXIT
echo "[test] tree $X, scratch $B"

CF="-O1 -g -fno-builtin -fno-strict-aliasing -fno-stack-protector -Wall -Wno-unused-function
 -I$H -I$X/tools/libacpi -I$X/tools/include -D__XEN_INTERFACE_VERSION__=__XEN_LATEST_INTERFACE_VERSION__
 -D__HVMLOADER_HYPERCALL_H__ -DLIBACPI_STDUTILS=\"$H/util.h\" -include $T/sim.h"
(
    cd "$B" || exit 1
    set -e
    gcc $CF -c "$T/sim.c" -o sim.o
    for f in pci e820 pir; do gcc $CF -c "$H/$f.c" -o $f.o; done
    for f in build static_tables; do gcc $CF -iquote "$H" -c "$X/tools/libacpi/$f.c" -o $f.o; done
    for f in dsdt_anycpu_qemu_xen dsdt_anycpu_q35; do gcc -c "$H/$f.c" -o $f.o; done
    gcc -O1 -c "$T/sim_host.c" -o sim_host.o
    gcc -o sim *.o
) > "$B/build.log" 2>&1 || { cat "$B/build.log"; echo "[test] FAIL: simulation does not build"; exit 1; }

rc=0
for s in q35 q35-bigmem q35-hole i440fx; do
    O=$B/$s
    mkdir -p $O
    if "$B/sim" $s $O > $O/sim.log 2>&1; then r=ok; else r=FAIL; rc=1; fi
    grep -E '^(CHECK FAILED|ASSERT|BUG)' $O/sim.log
    grep '^ACPIINFO' $O/sim.log > $O/acpiinfo
    (cd $O && iasl -d DSDT.dat FACP.dat APIC.dat $( [ -f MCFG.dat ] && echo MCFG.dat ) > iasl.log 2>&1) ||
        { echo "[test] $s: iasl -d failed"; rc=1; }
    if [ "${s#q35}" != "$s" ]; then
        python3 "$T/mkaetest.py" $O/DSDT.dsl "$(cat $O/acpiinfo)" > $O/test.asl &&
            (cd $O && iasl -p test test.asl > iasl-test.log 2>&1) || { echo "[test] $s: test DSDT"; rc=1; }
        timeout 60 acpiexec -b 'resources \_SB.PCI0; resources \_SB.MCFR' $O/test.aml 2>&1 |
            grep -v 'rscalc\|rslist' > $O/acpiexec-res.log
        timeout 60 acpiexec -b 'evaluate \TOSC 1 0x1F; evaluate \TOSC 1 0x7D; evaluate \TOSC 2 0x1F;
            evaluate \TOSU; evaluate \_PIC 1; evaluate \TPRT 5 3' $O/test.aml > $O/acpiexec-eval.log 2>&1
    fi
    python3 "$T/check_tables.py" $O $s > $O/check.log 2>&1 || { r=FAIL; rc=1; }
    grep -E '^CHECK FAILED' $O/check.log
    n=$(grep -c '^ok:' $O/sim.log $O/check.log | awk -F: '{s+=$2} END {print s}')
    echo "[test] $s: $r ($n checks passed)"
    if [ -n "${VERBOSE:-}" ]; then cat $O/sim.log $O/check.log; fi
done
[ -n "${KEEP:-}" ] && { rm -rf "$KEEP"; cp -a "$B" "$KEEP"; echo "[test] outputs kept in $KEEP"; }
[ $rc = 0 ] && echo "[test] PASS" || echo "[test] FAIL"
exit $rc
