/*
 * Host-side simulation of the patched hvmloader's PCI setup and ACPI table
 * build, without Xen.
 *
 * Links the real tools/firmware/hvmloader/pci.c, e820.c and pir.c and the
 * real tools/libacpi/build.c, static_tables.c and the generated DSDTs
 * against a mocked environment: a PCI configuration space model of bus 0
 * (BAR sizing masks, bridge and chipset registers), hvm_info, the Xen
 * memory map, xenstore keys and the hypercall hvmloader uses to relocate
 * RAM. The ACPI configuration mirrors hvmloader_acpi_build_tables()
 * (util.c), which is not linked because of its Xen dependencies.
 *
 * usage: sim SCENARIO OUTDIR
 *   SCENARIO: q35 | q35-bigmem | q35-hole | i440fx
 * Prints every chipset/bridge register write, the BAR assignment, the E820
 * map, the acpi_info page fields (ACPIINFO lines, consumed by run.sh) and
 * writes every ACPI table to OUTDIR/<signature>.dat for iasl -d. Exits
 * non-zero when an expectation of the scenario fails.
 *
 * This file is test code for the q35dm firmware patches; it is licensed
 * like the hvmloader sources it links with (GPL-2.0-only).
 */

#include "util.h"
#include "config.h"
#include "pci_regs.h"
#include "pir_types.h"
#include <acpi2_0.h>
#include <libacpi.h>
#include <xen/hvm/ioreq.h>
#include <xen/hvm/e820.h>

/* ---- tiny libc (util.h prototypes; the host libc is only used via sim_*) */
int sim_vprintf(const char *fmt, va_list ap);
void sim_fprintf_err(const char *fmt);
int sim_writefile(const char *dir, const char *name, const void *p, unsigned n);
void sim_exit(int code) __attribute__((noreturn));
void *sim_calloc(unsigned n);

static int strchr_(const char *s, char c)
{
    for ( ; *s; s++ )
        if ( *s == c )
            return 1;
    return 0;
}

static int bad_formats;

/* Only what hvmloader's _doprint() understands: %[-][0][width][l](d|u|o|x|X|s|c|%) */
static void check_format(const char *f)
{
    const char *start;

    for ( ; *f; f++ )
    {
        if ( *f != '%' )
            continue;
        start = f++;
        if ( *f == '-' )
            f++;
        while ( *f >= '0' && *f <= '9' )
            f++;
        if ( *f == 'l' )
            f++;
        if ( !*f || !strchr_("duoxXsc%", *f) )
        {
            sim_fprintf_err(start);
            bad_formats++;
            return;
        }
    }
}

int printf(const char *fmt, ...)
{
    va_list ap;
    int r;

    check_format(fmt);
    va_start(ap, fmt);
    r = sim_vprintf(fmt, ap);
    va_end(ap);
    return r;
}

void *memmove(void *dest, const void *src, unsigned n)
{
    char *d = dest;
    const char *s = src;

    if ( d < s )
        while ( n-- )
            *d++ = *s++;
    else
        while ( n-- )
            d[n] = s[n];
    return dest;
}

void *memcpy(void *dest, const void *src, unsigned n)
{
    return memmove(dest, src, n);
}

void *memset(void *s, int c, unsigned n)
{
    char *p = s;

    while ( n-- )
        *p++ = c;
    return s;
}

char *strncpy(char *dest, const char *src, unsigned n)
{
    unsigned i;

    for ( i = 0; i < n && src[i]; i++ )
        dest[i] = src[i];
    for ( ; i < n; i++ )
        dest[i] = 0;
    return dest;
}

int strcmp(const char *a, const char *b)
{
    for ( ; *a && *a == *b; a++, b++ )
        ;
    return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, uint32_t n)
{
    for ( ; n && *a && *a == *b; n--, a++, b++ )
        ;
    return n ? (unsigned char)*a - (unsigned char)*b : 0;
}

long long strtoll(const char *s, char **end, int base)
{
    long long v = 0;

    if ( s[0] == '0' && (s[1] == 'x' || s[1] == 'X') )
    {
        s += 2;
        base = 16;
    }
    if ( !base )
        base = 10;
    for ( ;; s++ )
    {
        int d = (*s >= '0' && *s <= '9') ? *s - '0' :
                (*s >= 'a' && *s <= 'f') ? *s - 'a' + 10 :
                (*s >= 'A' && *s <= 'F') ? *s - 'A' + 10 : 99;
        if ( d >= base )
            break;
        v = v * base + d;
    }
    if ( end )
        *end = (char *)s;
    return v;
}

/* The harness's own output (any host format). */
static int hprintf(const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = sim_vprintf(fmt, ap);
    va_end(ap);
    return r;
}

void __assert_failed(const char *assertion, const char *file, int line)
{
    hprintf("ASSERT FAILED: %s at %s:%d\n", assertion, file, line);
    sim_exit(3);
}

void __bug(const char *file, int line)
{
    hprintf("BUG at %s:%d\n", file, line);
    sim_exit(3);
}

/* ---- hvmloader environment ---------------------------------------------- */
static struct hvm_info_table hvm_info_tbl;
struct hvm_info_table *get_hvm_info_table(void) { return &hvm_info_tbl; }
unsigned long scratch_start;
bool acpi_enabled = true;
static unsigned int phys_bits = 40;
unsigned int cpu_phys_addr(void) { return phys_bits; }
unsigned long acpi_pages_allocated(void) { return 4; }
xen_pfn_t mem_hole_alloc(uint32_t nr_mfns) { BUG(); return 0; }
void *scratch_alloc(uint32_t size, uint32_t align) { return sim_calloc(size); }
int get_mem_mapping_layout(struct e820entry entries[], unsigned int *max_entries)
{
    BUG();
    return -1;
}

bool check_overlap(uint64_t start, uint64_t size,
                   uint64_t reserved_start, uint64_t reserved_size)
{
    return (start + size > reserved_start) &&
            (start < reserved_start + reserved_size);
}

static const char *xs_allow_relocate = "0";   /* libxl, qemu-xen */
static const char *xs_mmio_hole_size;

const char *xenstore_read(const char *path, const char *default_resp)
{
    if ( !strcmp(path, "hvmloader/allow-memory-relocate") )
        return xs_allow_relocate;
    if ( !strcmp(path, "platform/mmio_hole_size") )
        return xs_mmio_hole_size;
    return default_resp;
}

int hypercall_memory_op(int cmd, void *arg)
{
    hprintf("sim: XENMEM op %d (RAM relocation)\n", cmd);
    return 0;
}

static uint8_t elcr[2];
void outb(uint16_t addr, uint8_t val)
{
    if ( addr == 0x4d0 || addr == 0x4d1 )
        elcr[addr - 0x4d0] = val;
    hprintf("sim: outb %#x <- %#x\n", addr, val);
}

/* ---- PCI configuration space model (bus 0) ------------------------------ */
struct fn {
    bool present;
    const char *name;
    uint8_t cfg[256];
    uint8_t wmask[256];
};
static struct fn fns[256];
static int failures;

#define CHECK(cond, ...) do {                                   \
        if ( !(cond) ) { hprintf("CHECK FAILED: " __VA_ARGS__);   \
                         hprintf("  (%s)\n", #cond); failures++; } \
        else { hprintf("ok: " __VA_ARGS__); hprintf("\n"); }       \
    } while ( 0 )

static uint32_t rd(unsigned devfn, unsigned reg, unsigned len)
{
    uint32_t v = 0;
    unsigned i;

    for ( i = 0; i < len; i++ )
        v |= (uint32_t)fns[devfn].cfg[(reg + i) & 0xff] << (8 * i);
    return v;
}

static void set(unsigned devfn, unsigned reg, unsigned len, uint32_t v,
                uint32_t wmask)
{
    unsigned i;

    for ( i = 0; i < len; i++ )
    {
        fns[devfn].cfg[reg + i] = v >> (8 * i);
        fns[devfn].wmask[reg + i] = wmask >> (8 * i);
    }
}

uint32_t pci_read(uint32_t devfn, uint32_t reg, uint32_t len)
{
    if ( !fns[devfn].present )
        return len == 4 ? 0xffffffff : (1u << (8 * len)) - 1;
    return rd(devfn, reg, len);
}

static bool logged(uint32_t devfn, uint32_t reg)
{
    if ( !fns[devfn].present )
        return false;
    if ( devfn == 0 && reg >= 0x60 && reg < 0x68 && fns[0].cfg[2] == 0xc0 )
        return true;                                  /* MCH PCIEXBAR */
    if ( devfn == PCI_ICH9_LPC_DEVFN && reg >= 0x40 && reg < 0x70 )
        return true;                                  /* LPC */
    if ( (fns[devfn].cfg[PCI_HEADER_TYPE] & 0x7f) == 1 &&
         reg >= 0x18 && reg < 0x30 )
        return true;                                  /* bridge */
    return false;
}

void pci_write(uint32_t devfn, uint32_t reg, uint32_t len, uint32_t val)
{
    unsigned i;

    if ( !fns[devfn].present )
        return;
    if ( logged(devfn, reg) )
        hprintf("sim: cfg write %02x:%x %-6s +%#04x len %u <- %#x\n",
               devfn >> 3, devfn & 7, fns[devfn].name, reg, len, val);
    for ( i = 0; i < len; i++ )
    {
        uint8_t m = fns[devfn].wmask[reg + i], b = val >> (8 * i);

        fns[devfn].cfg[reg + i] = (fns[devfn].cfg[reg + i] & ~m) | (b & m);
    }
}

static void add_fn(unsigned devfn, const char *name, uint16_t vid, uint16_t did,
                   uint32_t class_rev, uint8_t htype, uint8_t pin)
{
    struct fn *f = &fns[devfn];

    f->present = true;
    f->name = name;
    set(devfn, 0, 2, vid, 0);
    set(devfn, 2, 2, did, 0);
    set(devfn, 4, 2, 0, 0x0547);
    set(devfn, 8, 4, class_rev, 0);
    set(devfn, PCI_HEADER_TYPE, 1, htype, 0);
    set(devfn, PCI_INTERRUPT_LINE, 1, 0, 0xff);
    set(devfn, PCI_INTERRUPT_PIN, 1, pin, 0);
}

/* A BAR of size sz: io, 32-bit or 64-bit memory (prefetchable if pf). */
enum bar_kind { BAR_IO, BAR_MEM32, BAR_MEM64 };
static void add_bar(unsigned devfn, unsigned idx, enum bar_kind k,
                    uint64_t sz, bool pf)
{
    unsigned reg = PCI_BASE_ADDRESS_0 + 4 * idx;

    switch ( k )
    {
    case BAR_IO:
        set(devfn, reg, 4, 1, ~(uint32_t)(sz - 1) & 0xfffffffc);
        break;
    case BAR_MEM32:
        set(devfn, reg, 4, pf ? 8 : 0, ~(uint32_t)(sz - 1) & 0xfffffff0);
        break;
    case BAR_MEM64:
        set(devfn, reg, 4, (pf ? 8 : 0) | 4,
            (uint32_t)~(sz - 1) & 0xfffffff0);
        set(devfn, reg + 4, 4, 0, (uint32_t)(~(sz - 1) >> 32));
        break;
    }
}

static void add_rom(unsigned devfn, unsigned reg, uint32_t sz)
{
    set(devfn, reg, 4, 0, (~(sz - 1) & 0xfffff800) | 1);
}

static uint64_t bar_addr(unsigned devfn, unsigned idx)
{
    unsigned reg = PCI_BASE_ADDRESS_0 + 4 * idx;
    uint32_t lo = rd(devfn, reg, 4);
    uint64_t a = lo & ((lo & 1) ? ~3u : ~15u);

    if ( !(lo & 1) && (lo & 6) == 4 )
        a |= (uint64_t)rd(devfn, reg + 4, 4) << 32;
    return a;
}

static void add_q35_chipset(void)
{
    add_fn(0x00, "mch", 0x8086, 0x29c0, 0x06000000, 0, 0);
    /* PCIEXBAR: reset 0xb0000000, disabled; all bits writable */
    set(0x00, 0x60, 4, 0xb0000000, 0xffffffff);
    set(0x00, 0x64, 4, 0, 0xffffffff);
    add_fn(PCI_ICH9_LPC_DEVFN, "lpc", 0x8086, 0x2918, 0x06010002, 0x80, 0);
    set(PCI_ICH9_LPC_DEVFN, 0x40, 4, 1, 0xff80);              /* PMBASE */
    set(PCI_ICH9_LPC_DEVFN, 0x44, 1, 0, 0x87);                /* ACPI_CNTL */
    set(PCI_ICH9_LPC_DEVFN, 0x60, 4, 0x80808080, 0x8f8f8f8f); /* PIRQA-D */
    set(PCI_ICH9_LPC_DEVFN, 0x68, 4, 0x80808080, 0x8f8f8f8f); /* PIRQE-H */
    set(PCI_ICH9_LPC_DEVFN, 0xf0, 4, 0, 0xffffc001);          /* RCBA */
}

static void add_root_port(unsigned devfn, const char *name)
{
    add_fn(devfn, name, 0x1b36, 0x000c, 0x06040000, 0x01, 1);
    set(devfn, 0x18, 4, 0, 0x00ffffff);                      /* bus numbers */
    set(devfn, 0x1c, 2, 0x0101, 0xf0f0);                     /* 32-bit I/O */
    set(devfn, 0x20, 4, 0, 0xfff0fff0);
    set(devfn, 0x24, 4, 0x00010001, 0xfff0fff0);             /* 64-bit pref */
    set(devfn, 0x28, 4, 0, 0xffffffff);
    set(devfn, 0x2c, 4, 0, 0xffffffff);
    set(devfn, 0x30, 4, 0, 0xffffffff);
}

static void add_xen_platform(unsigned devfn)
{
    add_fn(devfn, "xenpf", 0x5853, 0x0001, 0xff800001, 0, 1);
    add_bar(devfn, 0, BAR_IO, 0x100, false);
    add_bar(devfn, 1, BAR_MEM32, MB(16), true);
}

/* ---- ACPI: hvmloader_acpi_build_tables() without Xen -------------------- */
static uint8_t acpi_mem[1 << 20] __attribute__((aligned(4096)));
static unsigned long acpi_used;
#define ACPI_SIM_PHYS ACPI_MEMORY_DYNAMIC_START

static void *sim_alloc(struct acpi_ctxt *ctxt, uint32_t size, uint32_t align)
{
    unsigned long s = (acpi_used + align - 1) & ~(unsigned long)(align - 1);

    if ( s + size > sizeof(acpi_mem) )
        return NULL;
    acpi_used = s + size;
    return &acpi_mem[s];
}

static void sim_free(struct acpi_ctxt *ctxt, void *v, uint32_t size) {}

static unsigned long sim_v2p(struct acpi_ctxt *ctxt, void *v)
{
    return ACPI_SIM_PHYS + ((uint8_t *)v - acpi_mem);
}

static void *sim_p2v(uint64_t p)
{
    return &acpi_mem[p - ACPI_SIM_PHYS];
}

static uint32_t sim_lapic_id(unsigned cpu) { return LAPIC_ID(cpu); }

static uint8_t acpi_info_page[4096], rsdp_buf[64];
static uint16_t no_tpm[2];

static void dump_tables(const char *outdir)
{
    struct acpi_20_rsdp *rsdp = (void *)rsdp_buf;
    struct acpi_20_xsdt *xsdt = sim_p2v(rsdp->xsdt_address);
    unsigned int i, n = (xsdt->header.length - sizeof(xsdt->header)) / 8;
    struct acpi_fadt *fadt = NULL;
    char name[16];

    sim_writefile(outdir, "RSDP.dat", rsdp, sizeof(*rsdp));
    sim_writefile(outdir, "XSDT.dat", xsdt, xsdt->header.length);
    for ( i = 0; i < n; i++ )
    {
        struct acpi_header *h = sim_p2v(xsdt->entry[i]);

        memcpy(name, &h->signature, 4);
        strncpy(name + 4, ".dat", 5);
        hprintf("sim: XSDT[%u] %.4s length %u\n", i, name, h->length);
        sim_writefile(outdir, name, h, h->length);
        if ( h->signature == ACPI_FADT_SIGNATURE )
            fadt = (void *)h;
    }
    if ( fadt )
    {
        struct acpi_header *d = sim_p2v(fadt->x_dsdt);

        sim_writefile(outdir, "DSDT.dat", d, d->length);
        hprintf("sim: DSDT length %u\n", d->length);
        hprintf("sim: FADT sci_int %u smi_cmd %#x pm1a_evt %#x pm1a_cnt %#x "
               "pm_tmr %#x gpe0 %#x/%u reset %#x/%#x\n",
               fadt->sci_int, fadt->smi_cmd, fadt->pm1a_evt_blk,
               fadt->pm1a_cnt_blk, fadt->pm_tmr_blk, fadt->gpe0_blk,
               fadt->gpe0_blk_len, (uint32_t)fadt->reset_reg.address,
               fadt->reset_value);
    }
}

static struct acpi_mcfg *find_table(uint32_t sig)
{
    struct acpi_20_rsdp *rsdp = (void *)rsdp_buf;
    struct acpi_20_xsdt *xsdt = sim_p2v(rsdp->xsdt_address);
    unsigned int i, n = (xsdt->header.length - sizeof(xsdt->header)) / 8;

    for ( i = 0; i < n; i++ )
    {
        struct acpi_header *h = sim_p2v(xsdt->entry[i]);

        if ( h->signature == sig )
            return (void *)h;
    }
    return NULL;
}

static void build_acpi(const char *outdir)
{
    struct acpi_config cfg = { 0 }, *config = &cfg;
    struct acpi_ctxt ctxt = {
        .mem_ops = { .alloc = sim_alloc, .free = sim_free, .v2p = sim_v2p },
    };
    uint32_t *w;

    /* === as hvmloader_acpi_build_tables() in util.c (qemu-xen) === */
    config->dsdt_anycpu = dsdt_anycpu_qemu_xen;
    config->dsdt_anycpu_len = dsdt_anycpu_qemu_xen_len;
    if ( chipset_is_q35() )
    {
        config->dsdt_anycpu = dsdt_anycpu_q35;
        config->dsdt_anycpu_len = dsdt_anycpu_q35_len;
        config->dsdt_15cpu = NULL;
        config->dsdt_15cpu_len = 0;
        config->gpe0_blk = ACPI_PM1A_EVT_BLK_ADDRESS_V1 + ICH9_PMIO_GPE0_BLK;
        config->gpe0_blk_len = ICH9_PMIO_GPE0_LEN;
    }
    config->lapic_base_address = LAPIC_BASE_ADDRESS;
    config->lapic_id = sim_lapic_id;
    config->ioapic_base_address = 0xfec00000;
    config->ioapic_id = IOAPIC_ID;
    config->pci_isa_irq_mask = PCI_ISA_IRQ_MASK;
    config->table_flags |= ACPI_HAS_COM1 | ACPI_HAS_HPET;
    config->pci_start = pci_mem_bar_start;
    config->pci_len = pci_mem_end - pci_mem_bar_start;
    if ( pci_hi_mem_end > pci_hi_mem_start )
    {
        config->pci_hi_start = pci_hi_mem_start;
        config->pci_hi_len = pci_hi_mem_end - pci_hi_mem_start;
    }
    if ( chipset_is_q35() && pci_hi_win_end > pci_hi_win_start )
    {
        config->pci_hi_start = pci_hi_win_start;
        config->pci_hi_len = pci_hi_win_end - pci_hi_win_start;
    }
    if ( pci_mmcfg_size )
    {
        config->table_flags |= ACPI_HAS_MCFG;
        config->mcfg_base = pci_mmcfg_base;
        config->mcfg_start_bus = 0;
        config->mcfg_end_bus = (pci_mmcfg_size >> 20) - 1;
    }
    if ( !chipset_is_q35() )
        config->table_flags |= ACPI_HAS_SSDT_S3 | ACPI_HAS_SSDT_S4;
    config->table_flags |= (ACPI_HAS_TCPA | ACPI_HAS_IOAPIC |
                            ACPI_HAS_WAET | ACPI_HAS_PMTIMER |
                            ACPI_HAS_BUTTONS | ACPI_HAS_VGA |
                            ACPI_HAS_8042 | ACPI_HAS_CMOS_RTC);
    config->acpi_revision = 4;
    config->tis_hdr = no_tpm;
    config->hvminfo = &hvm_info_tbl;
    config->rsdp = (unsigned long)rsdp_buf;
    config->infop = (unsigned long)acpi_info_page;
    /* === end === */

    if ( acpi_build_tables(&ctxt, config) )
    {
        hprintf("CHECK FAILED: acpi_build_tables\n");
        failures++;
        return;
    }

    w = (uint32_t *)acpi_info_page;
    hprintf("ACPIINFO UAR1=%u UAR2=%u LTP1=%u HPET=%u NCPU=%u PMIN=%#x PLEN=%#x "
           "LMIN=%#x HMIN=%#x LLEN=%#x HLEN=%#x MCBL=%#x MCBH=%#x MCLN=%#x "
           "BUSE=%#x\n",
           acpi_info_page[0] & 1, (acpi_info_page[0] >> 1) & 1,
           (acpi_info_page[0] >> 2) & 1, (acpi_info_page[0] >> 3) & 1,
           acpi_info_page[2] | (acpi_info_page[3] << 8),
           w[1], w[2], w[6], w[7], w[8], w[9], w[10], w[11], w[12], w[13]);
    dump_tables(outdir);
}

/* ---- scenarios ----------------------------------------------------------- */
static void setup_memory(uint64_t low_end, uint64_t high_end)
{
    hvm_info_tbl.nr_vcpus = 2;
    hvm_info_tbl.apic_mode = 1;
    hvm_info_tbl.vcpu_online[0] = 3;
    hvm_info_tbl.low_mem_pgend = low_end >> PAGE_SHIFT;
    hvm_info_tbl.high_mem_pgend = high_end >> PAGE_SHIFT;
    memory_map.nr_map = 0;
    /* as libxl: low RAM from 1 MiB (hvmloader adds 0-640 KiB itself) */
    memory_map.map[memory_map.nr_map++] = (struct e820entry){
        .addr = MB(1), .size = low_end - MB(1), .type = E820_RAM };
    if ( high_end )
        memory_map.map[memory_map.nr_map++] = (struct e820entry){
            .addr = GB(4), .size = high_end - GB(4), .type = E820_RAM };
}

static void check_lpc(void)
{
    unsigned i;
    static const uint8_t irq[4] = { 5, 10, 11, 5 };

    for ( i = 0; i < 4; i++ )
    {
        CHECK(rd(PCI_ICH9_LPC_DEVFN, 0x68 + i, 1) == irq[i],
              "PIRQ%c_ROUT = IRQ%u (Xen link %u)", 'E' + i, irq[i], i);
        CHECK(rd(PCI_ICH9_LPC_DEVFN, 0x60 + i, 1) == irq[i],
              "PIRQ%c_ROUT = IRQ%u", 'A' + i, irq[i]);
    }
    CHECK(rd(PCI_ICH9_LPC_DEVFN, 0x40, 4) == 0xb001, "PMBASE = 0xb000|1");
    CHECK(rd(PCI_ICH9_LPC_DEVFN, 0x44, 1) == 0x80, "ACPI_CNTL = ACPI_EN, SCI IRQ9");
    CHECK(rd(PCI_ICH9_LPC_DEVFN, 0xf0, 4) == 0, "RCBA left disabled");
    CHECK(elcr[0] == 0x20 && elcr[1] == 0x0c, "ELCR: IRQ 5, 10, 11 level");
}

static void check_bridge(unsigned devfn)
{
    CHECK(rd(devfn, 0x19, 1) == 0 && rd(devfn, 0x1a, 1) == 0,
          "%02x.%x: bus numbers left to the OS", devfn >> 3, devfn & 7);
    CHECK((rd(devfn, 0x1c, 1) & 0xf0) > (rd(devfn, 0x1d, 1) & 0xf0),
          "%02x.%x: I/O window closed", devfn >> 3, devfn & 7);
    CHECK(rd(devfn, 0x20, 2) > rd(devfn, 0x22, 2),
          "%02x.%x: memory window closed", devfn >> 3, devfn & 7);
    CHECK(rd(devfn, 0x24, 2) > rd(devfn, 0x26, 2),
          "%02x.%x: prefetchable window closed", devfn >> 3, devfn & 7);
}

static void check_mmconfig(uint32_t base, uint32_t size, unsigned len_bits)
{
    struct acpi_mcfg *m = find_table(ACPI_MCFG_SIGNATURE);

    CHECK(pci_mmcfg_base == base && pci_mmcfg_size == size,
          "MMCONFIG %#x size %#x", base, size);
    CHECK(rd(0, 0x60, 4) == (base | len_bits << 1 | 1) && rd(0, 0x64, 4) == 0,
          "PCIEXBAR = %#x", base | len_bits << 1 | 1);
    CHECK(pci_mem_bar_start == base + size, "BARs start above MMCONFIG");
    CHECK(m && m->allocation[0].base_address == base &&
          m->allocation[0].pci_segment == 0 && m->allocation[0].start_bus == 0 &&
          m->allocation[0].end_bus == (size >> 20) - 1 &&
          m->header.length == 60,
          "MCFG: segment 0, buses 0-%u at %#x", (size >> 20) - 1, base);
}

static void check_e820_mmconfig(void)
{
    struct e820entry e820[32];
    unsigned i, nr = build_e820_table(e820, 0, 0xe0000);
    bool found = false;

    dump_e820_table(e820, nr);
    for ( i = 0; i < nr; i++ )
        if ( e820[i].addr == pci_mmcfg_base && e820[i].size == pci_mmcfg_size &&
             e820[i].type == E820_RESERVED )
            found = true;
    CHECK(found == (pci_mmcfg_size != 0), "E820 reserves the MMCONFIG window");
}

static void check_irqs(void)
{
    unsigned devfn;

    for ( devfn = 8; devfn < 256; devfn++ )
    {
        unsigned pin = fns[devfn].present ? rd(devfn, PCI_INTERRUPT_PIN, 1) : 0;
        unsigned link = ((pin - 1) + (devfn >> 3)) & 3;

        if ( !pin )
            continue;
        CHECK(rd(devfn, PCI_INTERRUPT_LINE, 1) ==
              rd(PCI_ICH9_LPC_DEVFN, 0x68 + link, 1),
              "%02x.%x INT%c -> link %u -> IRQ%u", devfn >> 3, devfn & 7,
              'A' + pin - 1, link, rd(devfn, PCI_INTERRUPT_LINE, 1));
    }
}

static void check_pir(void)
{
    struct pir_table *pir = (void *)create_pir_tables();
    unsigned i;
    bool ok = true;

    for ( i = 0; i < 32; i++ )
        ok &= pir->slots[i].dev == i << 3 &&
              pir->slots[i].link_a == 0x68 + (i & 3) &&
              pir->slots[i].link_b == 0x68 + ((i + 1) & 3) &&
              pir->slots[i].link_d == 0x68 + ((i + 3) & 3);
    CHECK(pir->router_devfn == 0xf8 && pir->router_did == 0x2918 &&
          pir->length == sizeof(*pir) + 32 * sizeof(struct pir_slot) && ok,
          "$PIR: router 00:1f.0 8086:2918, 32 slots on PIRQE-H");
}

int main(int argc, char **argv)
{
    const char *scn = argc > 1 ? argv[1] : "q35";
    const char *outdir = argc > 2 ? argv[2] : ".";

    scratch_start = (unsigned long)sim_calloc(1 << 20);
    hprintf("=== scenario %s ===\n", scn);

    if ( !strcmp(scn, "q35") )
    {
        /* 256 MiB guest: the hole grows to 0xe0000000 for 256 MiB MMCONFIG */
        setup_memory(MB(256), 0);
        add_q35_chipset();
        add_root_port(0x08, "rp0");
        add_root_port(0x09, "rp1");
        set(0x09, 0x0e, 1, 0x81, 0);          /* multi-function bridge */
        add_bar(0x08, 0, BAR_MEM32, 0x1000, false);   /* e.g. MSI-X table */
        add_xen_platform(0x10);
        add_fn(0x18, "ep", 0x1b36, 0x0010, 0x01080200, 0, 1);
        add_bar(0x18, 0, BAR_MEM64, MB(8), true);
        add_bar(0x18, 2, BAR_MEM32, 0x4000, false);
        add_rom(0x18, PCI_ROM_ADDRESS, 0x40000);
        pci_setup();
        check_lpc();
        check_bridge(0x08);
        check_bridge(0x09);
        check_irqs();
        build_acpi(outdir);
        check_mmconfig(0xe0000000, MB(256), 0);
        CHECK(bar_addr(0x08, 0) >= 0xf0000000, "root port BAR0 above MMCONFIG");
        CHECK(bar_addr(0x10, 1) == 0xf0000000, "xen-platform BAR1 at 0xf0000000");
        CHECK(bar_addr(0x18, 0) >= 0xf0000000 && bar_addr(0x18, 0) < GB(4),
              "64-bit BAR stays below 4 GiB when the hole has room");
        CHECK(pci_hi_win_start == GB(4) && pci_hi_win_end == GB(4) + GB(32),
              "64-bit window 4 GiB + 32 GiB");
        CHECK(find_table(ACPI_2_0_MADT_SIGNATURE) != NULL, "MADT present");
        check_e820_mmconfig();
        check_pir();
    }
    else if ( !strcmp(scn, "q35-bigmem") )
    {
        /* RAM up to 0xf0000000 and above 4 GiB; no RAM relocation allowed */
        setup_memory(0xf0000000, GB(5));
        add_q35_chipset();
        add_root_port(0x08, "rp0");
        add_xen_platform(0x10);
        add_fn(0x18, "gpu", 0x1b36, 0x0011, 0x03020000, 0, 1);
        add_bar(0x18, 0, BAR_MEM64, GB(2), true);     /* > 1 GiB: goes high */
        add_bar(0x18, 2, BAR_MEM32, MB(16), false);
        add_fn(0x20, "nic", 0x1b36, 0x0012, 0x02000000, 0, 1);
        add_bar(0x20, 0, BAR_MEM64, MB(64), true);
        pci_setup();
        check_lpc();
        check_irqs();
        build_acpi(outdir);
        /* hole stays at 0xf0000000 (192 MiB): MMCONFIG shrinks to 64 MiB
         * so that the 32 MiB of 32-bit BARs and the 64-bit BARs fit */
        CHECK(pci_mem_start == 0xf0000000, "low hole not grown (no relocation)");
        CHECK(pci_mmcfg_size == MB(64) || pci_mmcfg_size == MB(128),
              "MMCONFIG fell back to %u MiB", pci_mmcfg_size >> 20);
        check_mmconfig(0xf0000000, pci_mmcfg_size,
                       pci_mmcfg_size == MB(128) ? 1 : 2);
        CHECK(bar_addr(0x18, 0) >= GB(5), "2 GiB BAR above RAM and 4 GiB: %x%08x",
              (uint32_t)(bar_addr(0x18, 0) >> 32), (uint32_t)bar_addr(0x18, 0));
        CHECK(bar_addr(0x18, 2) < GB(4) && bar_addr(0x18, 2) >= pci_mem_bar_start,
              "32-bit BAR in the low hole above MMCONFIG");
        CHECK(pci_hi_win_start == pci_hi_mem_start &&
              pci_hi_win_end >= pci_hi_mem_end &&
              pci_hi_win_end - pci_hi_win_start >= GB(32),
              "64-bit window covers the high BARs plus room");
        check_e820_mmconfig();
    }
    else if ( !strcmp(scn, "q35-hole") )
    {
        /* xl mmio_hole=1024: hole from 0xc0000000, 1 GiB */
        xs_mmio_hole_size = "0x40000000";
        setup_memory(0xc0000000, GB(6));
        add_q35_chipset();
        add_xen_platform(0x10);
        pci_setup();
        build_acpi(outdir);
        check_mmconfig(0xc0000000, MB(256), 0);
        check_e820_mmconfig();
    }
    else if ( !strcmp(scn, "i440fx") )
    {
        setup_memory(MB(256), 0);
        add_fn(0x00, "i440fx", 0x8086, 0x1237, 0x06000002, 0, 0);
        add_fn(0x08, "piix3", 0x8086, 0x7000, 0x06010000, 0x80, 0);
        set(0x08, 0x60, 4, 0x80808080, 0x8f8f8f8f);
        add_fn(0x0b, "piix4pm", 0x8086, 0x7113, 0x06800003, 0, 1);
        set(0x0b, 0x40, 4, 1, 0xffc0);
        set(0x0b, 0x80, 1, 0, 0x01);
        add_xen_platform(0x10);
        pci_setup();
        build_acpi(outdir);
        CHECK(!chipset_is_q35(), "i440FX path");
        CHECK(rd(0x08, 0x60, 4) == 0x050b0a05, "PIIX3 PIRQA-D = 5,10,11,5");
        CHECK(rd(0x0b, 0x40, 4) == 0xb001 && rd(0x0b, 0x80, 1) == 1,
              "PIIX4 PM base 0xb000, enabled");
        CHECK(pci_mmcfg_size == 0 && find_table(ACPI_MCFG_SIGNATURE) == NULL,
              "no MMCONFIG, no MCFG");
        CHECK(pci_mem_bar_start == pci_mem_start && pci_mem_start == 0xf0000000,
              "PCI window unchanged (0xf0000000)");
        CHECK(bar_addr(0x10, 1) == 0xf0000000, "xen-platform BAR1 at 0xf0000000");
        CHECK(rd(0x10, PCI_INTERRUPT_LINE, 1) == rd(0x08, 0x60 + ((2 + 0) & 3), 1),
              "xen-platform INTA -> IRQ%u", rd(0x10, PCI_INTERRUPT_LINE, 1));
        check_e820_mmconfig();
    }
    else
    {
        hprintf("unknown scenario %s\n", scn);
        return 2;
    }

    if ( bad_formats )
    {
        hprintf("CHECK FAILED: %d printf format(s) hvmloader cannot print\n",
               bad_formats);
        failures++;
    }
    hprintf("=== %s: %d check(s) failed ===\n", scn, failures);
    return failures ? 1 : 0;
}
