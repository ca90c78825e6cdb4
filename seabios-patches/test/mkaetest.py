#!/usr/bin/env python3
"""Turn a disassembled hvmloader DSDT into one acpiexec can evaluate.

The DSDT reads hvmloader's acpi_info page (OperationRegions BIOS at
0xFC000000 and, for Q35, BIO2 right after it), which acpiexec cannot
populate. Replace both regions by Name objects holding the values the
simulation (sim.c) wrote into acpi_info (its ACPIINFO line), and append a
method TOSC that calls PCI0._OSC the way Linux does.

usage: mkaetest.py DSDT.dsl "ACPIINFO K=V ..." > test.asl
"""
import re, sys

dsl = open(sys.argv[1]).read()
vals = dict(kv.split('=') for kv in sys.argv[2].split()[1:])

def replace_region(text, name):
    m = re.search(r'OperationRegion \(%s,[^)]*\)\s*Field \(%s,[^)]*\)\s*\{[^}]*\}' % (name, name), text)
    if not m:
        return text
    fields = re.findall(r'^\s*([A-Z0-9_]{4}),\s*\d+', m.group(0), re.M)
    names = '\n'.join('        Name (%s, %s)' % (f, vals.get(f, '0')) for f in fields)
    return text[:m.start()] + names + text[m.end():]

dsl = replace_region(dsl, 'BIOS')
dsl = replace_region(dsl, 'BIO2')
test = r'''
    Method (TOSC, 2, NotSerialized)
    {
        // Arg0: revision, Arg1: control bits requested (CDW3)
        Name (BUF, Buffer (12) {})
        CreateDWordField (BUF, 0, CDW1)
        CreateDWordField (BUF, 4, CDW2)
        CreateDWordField (BUF, 8, CDW3)
        Store (0x1F, CDW2)          // support: ext config, ASPM, ClockPM, segments, MSI
        Store (Arg1, CDW3)
        Return (\_SB.PCI0._OSC (ToUUID ("33db4d5b-1ff7-401c-9657-7441c03dd766"), Arg0, 3, BUF))
    }
    Method (TPRT, 2, NotSerialized)
    {
        // element Arg1 of _PRT entry Arg0 (acpiexec cannot print all of it)
        Return (DerefOf (Index (DerefOf (Index (\_SB.PCI0._PRT, Arg0)), Arg1)))
    }
    Method (TPRN, 0, NotSerialized)
    {
        Return (SizeOf (\_SB.PCI0._PRT))
    }
    Method (TOSU, 0, NotSerialized)
    {
        Name (BUF, Buffer (12) {})
        Return (\_SB.PCI0._OSC (ToUUID ("0811b06e-4a27-44f9-8d60-3cbbc22e7b48"), 1, 3, BUF))
    }
'''
i = dsl.rindex('}')
sys.stdout.write(dsl[:i] + test + dsl[i:])
