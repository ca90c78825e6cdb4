#!/usr/bin/env python3
"""Checks on the ACPI tables the simulation dumped (after iasl -d).

usage: check_tables.py OUTDIR SCENARIO
  OUTDIR holds DSDT.dsl, MCFG.dsl (q35*), FACP.dsl as written by iasl -d,
  acpiinfo (the simulation's ACPIINFO line) and, for q35*, the output of
  acpiexec on the test DSDT (mkaetest.py): acpiexec-res.log (resources of
  PCI0 and MCFR) and acpiexec-eval.log (TOSC 1 0x1F, TOSC 1 0x7D,
  TOSC 2 0x1F, TOSU, _PIC 1, TPRT 5 3).
Prints one line per check; exit status 1 if any failed.
"""
import re, sys

outdir, scenario = sys.argv[1], sys.argv[2]
q35 = scenario.startswith('q35')
dsdt = re.sub(r'//[^\n]*', '', open(outdir + '/DSDT.dsl').read())
facp = open(outdir + '/FACP.dsl').read()
info = dict(kv.split('=') for kv in open(outdir + '/acpiinfo').read().split()[1:])
info = {k: int(v, 0) for k, v in info.items()}
failed = 0


def check(cond, what):
    global failed
    print(('ok: ' if cond else 'CHECK FAILED: ') + what)
    if not cond:
        failed += 1


def field(text, name):
    m = re.search(r'\]\s+%s : ([0-9A-Fa-f]+)' % re.escape(name), text)
    return int(m.group(1), 16) if m else None


def device(name):
    """Text of Device (name) { ... } in the disassembly (brace matched)."""
    m = re.search(r'Device \(%s\)\s*\{' % name, dsdt)
    if not m:
        return ''
    depth, i = 1, m.end()
    while depth:
        depth += {'{': 1, '}': -1}.get(dsdt[i], 0)
        i += 1
    return dsdt[m.start():i]


def prt(name):
    m = re.search(r'Name \(%s, Package \(0x[0-9A-F]+\)\s*\{(.*?)\n\s*\}\)' % name, dsdt, re.S)
    if not m:
        return []
    return re.findall(r'Package \(0x04\)\s*\{\s*([^,]+),\s*([^,]+),\s*([^,]+),\s*([^\s}]+)\s*\}',
                      m.group(1))


def num(s):
    s = s.strip()
    return {'Zero': 0, 'One': 1, 'Ones': -1}.get(s, None) if not s.startswith('0x') else int(s, 16)


# FADT
check(field(facp, 'SCI Interrupt') == 9, 'FADT: SCI on IRQ 9')
check(field(facp, 'PM1A Event Block Address') == 0xb000, 'FADT: PM1a_EVT at 0xb000 (Xen)')
check(field(facp, 'PM1A Control Block Address') == 0xb004, 'FADT: PM1a_CNT at 0xb004')
check(field(facp, 'PM Timer Block Address') == 0xb008, 'FADT: PM timer at 0xb008 (Xen)')
check(field(facp, 'SMI Command Port') == 0, 'FADT: no SMI_CMD (hardware in ACPI mode)')
if q35:
    check(field(facp, 'GPE0 Block Address') == 0xb020 and field(facp, 'GPE0 Block Length') == 0x10,
          'FADT: GPE0 at PMBASE+0x20, 16 bytes (ICH9)')
else:
    check(field(facp, 'GPE0 Block Address') == 0xafe0 and field(facp, 'GPE0 Block Length') == 4,
          'FADT: GPE0 at 0xafe0, 4 bytes (qemu-xen PIIX4)')

if not q35:
    check('PNP0A03' in device('PCI0') and 'PNP0A08' not in dsdt, 'i440FX DSDT: PCI0 is PNP0A03')
    check('AE08' in dsdt.upper(), 'i440FX DSDT keeps the ACPI PCI hot-plug controller')
    sys.exit(1 if failed else 0)

# MCFG
mcfg = open(outdir + '/MCFG.dsl').read()
check(field(mcfg, 'Base Address') == info['MCBL'] | info['MCBH'] << 32 and
      field(mcfg, 'Segment Group Number') == 0 and field(mcfg, 'Start Bus Number') == 0 and
      field(mcfg, 'End Bus Number') == info['BUSE'],
      'MCFG: base %#x, segment 0, buses 0-%d' % (info['MCBL'], info['BUSE']))
check(info['MCLN'] == (info['BUSE'] + 1) << 20, 'acpi_info: MMCONFIG length matches the bus range')

# DSDT, static
pci0 = device('PCI0')
check('EisaId ("PNP0A08")' in pci0 and 'EisaId ("PNP0A03")' in pci0,
      'PCI0: _HID PNP0A08 (PCIe host bridge), _CID PNP0A03')
check('Method (_OSC, 4' in pci0 and '33db4d5b-1ff7-401c-9657-7441c03dd766' in pci0.lower(),
      'PCI0: _OSC for the PCI host bridge UUID')
check('AE08' not in dsdt.upper() and not re.search(r'Device \(S\d+\)', dsdt) and
      'Method (_E01' not in dsdt, 'no ACPI PCI hot-plug (slots, 0xae00/0xae08, GPE 1)')
check(re.search(r'Method \(_E02', dsdt) is not None, 'vCPU hot-plug GPE 2 handler kept')
check('Device (FDC0)' not in dsdt and 'Device (LPC)' in dsdt and '0x001F0000' in device('LPC'),
      'LPC at 00:1f.0, no floppy')
mcfr = device('MCFR')
check('EisaId ("PNP0C02")' in mcfr, 'MMCONFIG window is a PNP0C02 motherboard resource')
sysr = device('SYSR')
check(re.search(r'IO \(Decode16,\s*0xB000,\s*0xB000,\s*0x00,\s*0x80', sysr) is not None,
      'PM block 0xb000-0xb07f reserved (PNP0C02)')
m = re.search(r'Name \(_S5, Package \(0x04\)\s*\{([^}]*)\}', dsdt)
check(m and all(num(x) == 0 for x in m.group(1).split(',')), '_S5: SLP_TYP 0')
check('_S3' not in dsdt and '_S4' not in dsdt, 'no _S3/_S4 in the DSDT')
for i, l in enumerate('EFGH'):
    lnk = device('LNK' + l)
    check('PNP0C0F' in lnk and 'PIR' + l in lnk and '_UID, 0x%02X' % (i + 5) in lnk,
          'LNK%s: PCI interrupt link on PIRQ%s_ROUT' % (l, l))
check(re.search(r'PIRE,\s*8', dsdt) and re.search(r'Offset \(0x08\)', device('LPC')) is not None,
      'PIRQE-H fields at LPC config 0x68-0x6b')

apic = prt('PRTA')
pic = prt('PRTP')
bad = [e for e in apic
       if not (num(e[0]) & 0xffff == 0xffff and num(e[2]) == 0 and
               num(e[3]) == (((num(e[0]) >> 16) * 4 + (num(e[0]) >> 16) // 8 + num(e[1])) & 31) + 16)]
devs = sorted({num(e[0]) >> 16 for e in apic})
check(len(apic) == 124 and not bad and devs == list(range(1, 32)),
      "_PRT (APIC): slots 1-31 x INTA-D, GSI = ((dev*4 + dev/8 + pin) & 31) + 16 (Xen)")
bad = [e for e in pic
       if not (e[2].strip().endswith('LNK' + 'EFGH'[((num(e[0]) >> 16) + num(e[1])) & 3]) and num(e[3]) == 0)]
check(len(pic) == 124 and not bad, '_PRT (PIC): link LNK(E + (dev + pin) & 3) (Xen)')

# acpiexec evaluations
res = open(outdir + '/acpiexec-res.log').read().split('Evaluating _CRS')[1:]
ev = re.split(r'\nEvaluating \\', open(outdir + '/acpiexec-eval.log').read())[1:]
pcrs = res[0] if len(res) > 0 else ''
mcrs = res[1] if len(res) > 1 else ''
check(re.search(r'Bus Number Range.*?Address Minimum : 0000\s+Address Maximum : %04X' % info['BUSE'],
                pcrs, re.S) is not None, 'PCI0._CRS: buses 0-%d' % info['BUSE'])
lo_min, lo_len = info['PMIN'], info['PLEN']
check(re.search(r'Address Minimum : %08X\s+Address Maximum : %08X' % (lo_min, lo_min + lo_len - 1),
                pcrs) is not None,
      'PCI0._CRS: 32-bit window %#x-%#x (above MMCONFIG)' % (lo_min, lo_min + lo_len - 1))
hmin = info['LMIN'] | info['HMIN'] << 32
hlen = info['LLEN'] | info['HLEN'] << 32
if hlen:
    check(re.search(r'Address Minimum : %016X\s+Address Maximum : %016X' % (hmin, hmin + hlen - 1),
                    pcrs) is not None,
          'PCI0._CRS: 64-bit window %#x-%#x' % (hmin, hmin + hlen - 1))
check(not (lo_min < info['MCBL'] + info['MCLN'] and info['MCBL'] < lo_min + lo_len),
      'PCI0._CRS windows do not overlap MMCONFIG')
check(re.search(r'ResourceConsumer.*?Address Minimum : %08X\s+Address Maximum : %08X' %
                (info['MCBL'], info['MCBL'] + info['MCLN'] - 1), mcrs, re.S) is not None,
      'MCFR._CRS: %#x-%#x' % (info['MCBL'], info['MCBL'] + info['MCLN'] - 1))


def osc(i):
    m = re.search(r'\[Buffer\] Length 0C =\s+0000: ([0-9A-F ]+?)\s+//', ev[i]) if i < len(ev) else None
    if not m:
        return None
    b = bytes.fromhex(m.group(1))
    return [int.from_bytes(b[i:i + 4], 'little') for i in (0, 4, 8)]


r = osc(0)
check(r is not None and r[0] == 0 and r[2] == 0x1f,
      '_OSC: native hot-plug, SHPC, PME, AER, PCIe cap requested -> all granted (%s)' % r)
r = osc(1)
check(r is not None and r[0] & 0x10 and r[2] == 0x1d,
      '_OSC query with LTR/DPC too -> 0x1d granted, rest masked (%s)' % r)
r = osc(2)
check(r is not None and r[0] & 0x08, '_OSC: unknown revision flagged (%s)' % r)
r = osc(3)
check(r is not None and r[0] & 0x04, '_OSC: unknown UUID flagged (%s)' % r)
m = re.search(r'\[Integer\] = ([0-9A-F]+)', ev[5]) if len(ev) > 5 else None
check(m and int(m.group(1), 16) == 0x19, '_PIC(1) switches _PRT to GSIs (02.0 INTB -> GSI 25)')

sys.exit(1 if failed else 0)
