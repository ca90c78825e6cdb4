/*
 * The C side of tests/c_layout.rs: prints "name value" for every size, alignment, offset,
 * bitfield position, ioctl number and constant that xen-bindings mirrors, as the installed Xen
 * headers (Debian libxen-dev) define them. The names are those of
 * xen_bindings::layout::layout_table(); keep the two lists in the same order.
 *
 * SPDX-License-Identifier: Apache-2.0 OR MIT
 */

/* domctl.h refuses to be included without this; it also selects the current hypercall numbers
 * in xen.h (without it __HYPERVISOR_sched_op would be the pre-3.2 compat number 6). */
#define __XEN_TOOLS__ 1

#include <errno.h> /* before xs_wire.h, which only defines xsd_errors[] when EINVAL exists */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include <xen/xen.h>
#include <xen/sched.h>
#include <xen/domctl.h>
#include <xen/memory.h>
#include <xen/physdev.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/ioreq.h>
#include <xen/hvm/dm_op.h>
#include <xen/io/xs_wire.h>
#include <xen/sys/privcmd.h>
#include <xen/sys/evtchn.h>

static void emit(const char *name, unsigned long long value)
{
    printf("%s %llu\n", name, value);
}

#define SZ(s)      emit("sizeof:" #s, sizeof(struct s))
#define AL(s)      emit("alignof:" #s, _Alignof(struct s))
#define STRUCT(s)  do { SZ(s); AL(s); } while (0)
#define OFF(s, f)  emit("offsetof:" #s "." #f, offsetof(struct s, f))
#define MSZ(s, m)  emit("sizeof:" #s "." #m, sizeof(((struct s *)0)->m))
#define IOC(n)     emit("ioctl:" #n, (unsigned long long)(n))
#define CONST(n)   emit("const:" #n, (unsigned long long)(n))
#define FN(e)      emit("fn:" #e, (unsigned long long)(e))

/* All ones, assigned through a variable so that storing it into a narrow field is not a
 * constant-overflow diagnostic. */
static volatile unsigned long long all_ones = ~0ULL;

/* Compare a zeroed object with one where a single field was set to all ones. */
static void report_bitfield(const char *byte_name, const char *mask_name,
                            const unsigned char *zero, const unsigned char *set, size_t n)
{
    size_t i, changed = 0, at = 0;

    for (i = 0; i < n; i++) {
        if (zero[i] != set[i]) {
            changed++;
            at = i;
        }
    }
    if (changed == 1) {
        emit(byte_name, at);
        emit(mask_name, (unsigned char)(zero[at] ^ set[at]));
    } else {
        emit(byte_name, ~0ULL); /* layout::NOT_ONE_BYTE */
        emit(mask_name, 0);
    }
}

#define IOREQ_BITFIELD(f) do {                                               \
        struct ioreq z_, s_;                                                 \
        memset(&z_, 0, sizeof(z_));                                          \
        memset(&s_, 0, sizeof(s_));                                          \
        s_.f = all_ones;                                                     \
        report_bitfield("bitfield:ioreq." #f ".byte", "bitfield:ioreq." #f ".mask", \
                        (const unsigned char *)&z_, (const unsigned char *)&s_, sizeof(z_)); \
    } while (0)

#define BUF_IOREQ_MASK(f) do {                                               \
        struct buf_ioreq b_;                                                 \
        uint64_t v_;                                                         \
        memset(&b_, 0, sizeof(b_));                                          \
        b_.f = all_ones;                                                     \
        memcpy(&v_, &b_, sizeof(v_));                                        \
        emit("mask:buf_ioreq." #f, v_);                                      \
    } while (0)

_Static_assert(sizeof(struct buf_ioreq) == sizeof(uint64_t), "buf_ioreq is read as one u64");

int main(void)
{
    size_t i;

    /* ---- xen/hvm/ioreq.h ------------------------------------------------------------------ */
    STRUCT(ioreq);
    OFF(ioreq, addr);
    OFF(ioreq, data);
    OFF(ioreq, count);
    OFF(ioreq, size);
    OFF(ioreq, vp_eport);
    OFF(ioreq, _pad0);
    OFF(ioreq, type);
    IOREQ_BITFIELD(state);
    IOREQ_BITFIELD(data_is_ptr);
    IOREQ_BITFIELD(dir);
    IOREQ_BITFIELD(df);
    IOREQ_BITFIELD(_pad1);
    SZ(buf_ioreq);
    BUF_IOREQ_MASK(type);
    BUF_IOREQ_MASK(pad);
    BUF_IOREQ_MASK(dir);
    BUF_IOREQ_MASK(size);
    BUF_IOREQ_MASK(addr);
    BUF_IOREQ_MASK(data);
    SZ(buffered_iopage);
    OFF(buffered_iopage, read_pointer);
    OFF(buffered_iopage, write_pointer);
    OFF(buffered_iopage, buf_ioreq);
    CONST(IOREQ_READ);
    CONST(IOREQ_WRITE);
    CONST(STATE_IOREQ_NONE);
    CONST(STATE_IOREQ_READY);
    CONST(STATE_IOREQ_INPROCESS);
    CONST(STATE_IORESP_READY);
    CONST(IOREQ_TYPE_PIO);
    CONST(IOREQ_TYPE_COPY);
    CONST(IOREQ_TYPE_PCI_CONFIG);
    CONST(IOREQ_TYPE_TIMEOFFSET);
    CONST(IOREQ_TYPE_INVALIDATE);
    CONST(IOREQ_BUFFER_SLOT_NUM);
    CONST(HVM_IOREQSRV_BUFIOREQ_OFF);
    CONST(HVM_IOREQSRV_BUFIOREQ_LEGACY);
    CONST(HVM_IOREQSRV_BUFIOREQ_ATOMIC);

    /* ---- xen/hvm/dm_op.h ------------------------------------------------------------------ */
    SZ(xen_dm_op);
    AL(xen_dm_op);
    OFF(xen_dm_op, op);
    OFF(xen_dm_op, pad);
    OFF(xen_dm_op, u);
    MSZ(xen_dm_op, u);
    MSZ(xen_dm_op, u.create_ioreq_server);
    MSZ(xen_dm_op, u.get_ioreq_server_info);
    MSZ(xen_dm_op, u.map_io_range_to_ioreq_server);
    MSZ(xen_dm_op, u.unmap_io_range_from_ioreq_server);
    MSZ(xen_dm_op, u.set_ioreq_server_state);
    MSZ(xen_dm_op, u.destroy_ioreq_server);
    MSZ(xen_dm_op, u.track_dirty_vram);
    MSZ(xen_dm_op, u.set_pci_intx_level);
    MSZ(xen_dm_op, u.set_isa_irq_level);
    MSZ(xen_dm_op, u.set_pci_link_route);
    MSZ(xen_dm_op, u.modified_memory);
    MSZ(xen_dm_op, u.set_mem_type);
    MSZ(xen_dm_op, u.inject_event);
    MSZ(xen_dm_op, u.inject_msi);
    MSZ(xen_dm_op, u.map_mem_type_to_ioreq_server);
    MSZ(xen_dm_op, u.remote_shutdown);
    MSZ(xen_dm_op, u.relocate_memory);
    MSZ(xen_dm_op, u.pin_memory_cacheattr);
    MSZ(xen_dm_op, u.set_irq_level);
    MSZ(xen_dm_op, u.nr_vcpus);
    STRUCT(xen_dm_op_create_ioreq_server);
    OFF(xen_dm_op_create_ioreq_server, handle_bufioreq);
    OFF(xen_dm_op_create_ioreq_server, pad);
    OFF(xen_dm_op_create_ioreq_server, id);
    STRUCT(xen_dm_op_get_ioreq_server_info);
    OFF(xen_dm_op_get_ioreq_server_info, id);
    OFF(xen_dm_op_get_ioreq_server_info, flags);
    OFF(xen_dm_op_get_ioreq_server_info, bufioreq_port);
    OFF(xen_dm_op_get_ioreq_server_info, ioreq_gfn);
    OFF(xen_dm_op_get_ioreq_server_info, bufioreq_gfn);
    STRUCT(xen_dm_op_ioreq_server_range);
    OFF(xen_dm_op_ioreq_server_range, id);
    OFF(xen_dm_op_ioreq_server_range, pad);
    OFF(xen_dm_op_ioreq_server_range, type);
    OFF(xen_dm_op_ioreq_server_range, start);
    OFF(xen_dm_op_ioreq_server_range, end);
    STRUCT(xen_dm_op_set_ioreq_server_state);
    OFF(xen_dm_op_set_ioreq_server_state, id);
    OFF(xen_dm_op_set_ioreq_server_state, enabled);
    OFF(xen_dm_op_set_ioreq_server_state, pad);
    STRUCT(xen_dm_op_destroy_ioreq_server);
    OFF(xen_dm_op_destroy_ioreq_server, id);
    OFF(xen_dm_op_destroy_ioreq_server, pad);
    STRUCT(xen_dm_op_track_dirty_vram);
    OFF(xen_dm_op_track_dirty_vram, nr);
    OFF(xen_dm_op_track_dirty_vram, pad);
    OFF(xen_dm_op_track_dirty_vram, first_pfn);
    STRUCT(xen_dm_op_set_pci_intx_level);
    OFF(xen_dm_op_set_pci_intx_level, domain);
    OFF(xen_dm_op_set_pci_intx_level, bus);
    OFF(xen_dm_op_set_pci_intx_level, device);
    OFF(xen_dm_op_set_pci_intx_level, intx);
    OFF(xen_dm_op_set_pci_intx_level, level);
    STRUCT(xen_dm_op_set_isa_irq_level);
    OFF(xen_dm_op_set_isa_irq_level, isa_irq);
    OFF(xen_dm_op_set_isa_irq_level, level);
    STRUCT(xen_dm_op_set_pci_link_route);
    OFF(xen_dm_op_set_pci_link_route, link);
    OFF(xen_dm_op_set_pci_link_route, isa_irq);
    STRUCT(xen_dm_op_modified_memory);
    OFF(xen_dm_op_modified_memory, nr_extents);
    OFF(xen_dm_op_modified_memory, opaque);
    STRUCT(xen_dm_op_modified_memory_extent);
    OFF(xen_dm_op_modified_memory_extent, nr);
    OFF(xen_dm_op_modified_memory_extent, pad);
    OFF(xen_dm_op_modified_memory_extent, first_pfn);
    STRUCT(xen_dm_op_set_mem_type);
    OFF(xen_dm_op_set_mem_type, nr);
    OFF(xen_dm_op_set_mem_type, mem_type);
    OFF(xen_dm_op_set_mem_type, pad);
    OFF(xen_dm_op_set_mem_type, first_pfn);
    STRUCT(xen_dm_op_inject_event);
    OFF(xen_dm_op_inject_event, vcpuid);
    OFF(xen_dm_op_inject_event, vector);
    OFF(xen_dm_op_inject_event, type);
    OFF(xen_dm_op_inject_event, insn_len);
    OFF(xen_dm_op_inject_event, pad0);
    OFF(xen_dm_op_inject_event, error_code);
    OFF(xen_dm_op_inject_event, pad1);
    OFF(xen_dm_op_inject_event, cr2);
    STRUCT(xen_dm_op_inject_msi);
    OFF(xen_dm_op_inject_msi, data);
    OFF(xen_dm_op_inject_msi, pad);
    OFF(xen_dm_op_inject_msi, addr);
    STRUCT(xen_dm_op_map_mem_type_to_ioreq_server);
    OFF(xen_dm_op_map_mem_type_to_ioreq_server, id);
    OFF(xen_dm_op_map_mem_type_to_ioreq_server, type);
    OFF(xen_dm_op_map_mem_type_to_ioreq_server, flags);
    OFF(xen_dm_op_map_mem_type_to_ioreq_server, opaque);
    STRUCT(xen_dm_op_remote_shutdown);
    OFF(xen_dm_op_remote_shutdown, reason);
    STRUCT(xen_dm_op_relocate_memory);
    OFF(xen_dm_op_relocate_memory, size);
    OFF(xen_dm_op_relocate_memory, pad);
    OFF(xen_dm_op_relocate_memory, src_gfn);
    OFF(xen_dm_op_relocate_memory, dst_gfn);
    STRUCT(xen_dm_op_pin_memory_cacheattr);
    OFF(xen_dm_op_pin_memory_cacheattr, start);
    OFF(xen_dm_op_pin_memory_cacheattr, end);
    OFF(xen_dm_op_pin_memory_cacheattr, type);
    OFF(xen_dm_op_pin_memory_cacheattr, pad);
    STRUCT(xen_dm_op_set_irq_level);
    OFF(xen_dm_op_set_irq_level, irq);
    OFF(xen_dm_op_set_irq_level, level);
    OFF(xen_dm_op_set_irq_level, pad);
    STRUCT(xen_dm_op_nr_vcpus);
    OFF(xen_dm_op_nr_vcpus, vcpus);
    STRUCT(xen_dm_op_buf);
    OFF(xen_dm_op_buf, h);
    OFF(xen_dm_op_buf, size);
    CONST(XEN_DMOP_create_ioreq_server);
    CONST(XEN_DMOP_get_ioreq_server_info);
    CONST(XEN_DMOP_map_io_range_to_ioreq_server);
    CONST(XEN_DMOP_unmap_io_range_from_ioreq_server);
    CONST(XEN_DMOP_set_ioreq_server_state);
    CONST(XEN_DMOP_destroy_ioreq_server);
    CONST(XEN_DMOP_track_dirty_vram);
    CONST(XEN_DMOP_set_pci_intx_level);
    CONST(XEN_DMOP_set_isa_irq_level);
    CONST(XEN_DMOP_set_pci_link_route);
    CONST(XEN_DMOP_modified_memory);
    CONST(XEN_DMOP_set_mem_type);
    CONST(XEN_DMOP_inject_event);
    CONST(XEN_DMOP_inject_msi);
    CONST(XEN_DMOP_map_mem_type_to_ioreq_server);
    CONST(XEN_DMOP_remote_shutdown);
    CONST(XEN_DMOP_relocate_memory);
    CONST(XEN_DMOP_pin_memory_cacheattr);
    CONST(XEN_DMOP_set_irq_level);
    CONST(XEN_DMOP_nr_vcpus);
    CONST(XEN_DMOP_IO_RANGE_PORT);
    CONST(XEN_DMOP_IO_RANGE_MEMORY);
    CONST(XEN_DMOP_IO_RANGE_PCI);
    CONST(XEN_DMOP_no_gfns);
    CONST(SHUTDOWN_poweroff);
    CONST(SHUTDOWN_reboot);
    CONST(SHUTDOWN_suspend);
    CONST(SHUTDOWN_crash);
    FN(XEN_DMOP_PCI_SBDF(1,2,3,4));
    /* unsigned arguments: with plain ints, a segment >= 0x8000 is shifted into the sign bit */
    FN(XEN_DMOP_PCI_SBDF(0xffffu,0xffu,0x1fu,7u));

    /* ---- xen/sys/privcmd.h ---------------------------------------------------------------- */
    STRUCT(privcmd_hypercall);
    OFF(privcmd_hypercall, op);
    OFF(privcmd_hypercall, arg);
    STRUCT(privcmd_mmapbatch_v2);
    OFF(privcmd_mmapbatch_v2, num);
    OFF(privcmd_mmapbatch_v2, dom);
    OFF(privcmd_mmapbatch_v2, addr);
    OFF(privcmd_mmapbatch_v2, arr);
    OFF(privcmd_mmapbatch_v2, err);
    STRUCT(privcmd_dm_op_buf);
    OFF(privcmd_dm_op_buf, uptr);
    OFF(privcmd_dm_op_buf, size);
    STRUCT(privcmd_dm_op);
    OFF(privcmd_dm_op, dom);
    OFF(privcmd_dm_op, num);
    OFF(privcmd_dm_op, ubufs);
    STRUCT(privcmd_mmap_resource);
    OFF(privcmd_mmap_resource, dom);
    OFF(privcmd_mmap_resource, type);
    OFF(privcmd_mmap_resource, id);
    OFF(privcmd_mmap_resource, idx);
    OFF(privcmd_mmap_resource, num);
    OFF(privcmd_mmap_resource, addr);
    IOC(IOCTL_PRIVCMD_HYPERCALL);
    IOC(IOCTL_PRIVCMD_MMAPBATCH_V2);
    IOC(IOCTL_PRIVCMD_DM_OP);
    IOC(IOCTL_PRIVCMD_RESTRICT);
    IOC(IOCTL_PRIVCMD_MMAP_RESOURCE);
    CONST(_IOC_NONE);
    CONST(_IOC_WRITE);
    CONST(_IOC_READ);

    /* ---- xen/sys/evtchn.h ----------------------------------------------------------------- */
    STRUCT(ioctl_evtchn_bind_virq);
    OFF(ioctl_evtchn_bind_virq, virq);
    STRUCT(ioctl_evtchn_bind_interdomain);
    OFF(ioctl_evtchn_bind_interdomain, remote_domain);
    OFF(ioctl_evtchn_bind_interdomain, remote_port);
    STRUCT(ioctl_evtchn_bind_unbound_port);
    OFF(ioctl_evtchn_bind_unbound_port, remote_domain);
    STRUCT(ioctl_evtchn_unbind);
    OFF(ioctl_evtchn_unbind, port);
    STRUCT(ioctl_evtchn_notify);
    OFF(ioctl_evtchn_notify, port);
    STRUCT(ioctl_evtchn_restrict_domid);
    OFF(ioctl_evtchn_restrict_domid, domid);
    IOC(IOCTL_EVTCHN_BIND_VIRQ);
    IOC(IOCTL_EVTCHN_BIND_INTERDOMAIN);
    IOC(IOCTL_EVTCHN_BIND_UNBOUND_PORT);
    IOC(IOCTL_EVTCHN_UNBIND);
    IOC(IOCTL_EVTCHN_NOTIFY);
    IOC(IOCTL_EVTCHN_RESET);
    IOC(IOCTL_EVTCHN_RESTRICT_DOMID);

    /* ---- xen/xen.h ------------------------------------------------------------------------ */
    CONST(__HYPERVISOR_memory_op);
    CONST(__HYPERVISOR_sched_op);
    CONST(__HYPERVISOR_event_channel_op);
    CONST(__HYPERVISOR_physdev_op);
    CONST(__HYPERVISOR_domctl);
    CONST(__HYPERVISOR_dm_op);
    CONST(DOMID_FIRST_RESERVED);
    CONST(DOMID_SELF);
    CONST(DOMID_INVALID);
    CONST(DOMID_IDLE);

    /* ---- xen/domctl.h --------------------------------------------------------------------- */
    STRUCT(xen_domctl);
    OFF(xen_domctl, cmd);
    OFF(xen_domctl, interface_version);
    OFF(xen_domctl, domain);
    OFF(xen_domctl, _pad);
    OFF(xen_domctl, u);
    MSZ(xen_domctl, u);
    STRUCT(xen_domctl_memory_mapping);
    OFF(xen_domctl_memory_mapping, first_gfn);
    OFF(xen_domctl_memory_mapping, first_mfn);
    OFF(xen_domctl_memory_mapping, nr_mfns);
    OFF(xen_domctl_memory_mapping, add_mapping);
    OFF(xen_domctl_memory_mapping, padding);
    STRUCT(xen_domctl_ioport_mapping);
    OFF(xen_domctl_ioport_mapping, first_gport);
    OFF(xen_domctl_ioport_mapping, first_mport);
    OFF(xen_domctl_ioport_mapping, nr_ports);
    OFF(xen_domctl_ioport_mapping, add_mapping);
    STRUCT(xen_domctl_bind_pt_irq);
    OFF(xen_domctl_bind_pt_irq, machine_irq);
    OFF(xen_domctl_bind_pt_irq, irq_type);
    OFF(xen_domctl_bind_pt_irq, u);
    MSZ(xen_domctl_bind_pt_irq, u);
    MSZ(xen_domctl_bind_pt_irq, u.isa);
    OFF(xen_domctl_bind_pt_irq, u.isa.isa_irq);
    MSZ(xen_domctl_bind_pt_irq, u.pci);
    OFF(xen_domctl_bind_pt_irq, u.pci.bus);
    OFF(xen_domctl_bind_pt_irq, u.pci.device);
    OFF(xen_domctl_bind_pt_irq, u.pci.intx);
    MSZ(xen_domctl_bind_pt_irq, u.msi);
    OFF(xen_domctl_bind_pt_irq, u.msi.gvec);
    OFF(xen_domctl_bind_pt_irq, u.msi.gflags);
    OFF(xen_domctl_bind_pt_irq, u.msi.gtable);
    MSZ(xen_domctl_bind_pt_irq, u.spi);
    OFF(xen_domctl_bind_pt_irq, u.spi.spi);
    STRUCT(xen_domctl_irq_permission);
    OFF(xen_domctl_irq_permission, pirq);
    OFF(xen_domctl_irq_permission, allow_access);
    OFF(xen_domctl_irq_permission, pad);
    STRUCT(xen_domctl_iomem_permission);
    OFF(xen_domctl_iomem_permission, first_mfn);
    OFF(xen_domctl_iomem_permission, nr_mfns);
    OFF(xen_domctl_iomem_permission, allow_access);
    STRUCT(xen_domctl_ioport_permission);
    OFF(xen_domctl_ioport_permission, first_port);
    OFF(xen_domctl_ioport_permission, nr_ports);
    OFF(xen_domctl_ioport_permission, allow_access);
    OFF(xen_domctl_getdomaininfo, domain); /* head only: no sizeof */
    OFF(xen_domctl_getdomaininfo, pad1);
    OFF(xen_domctl_getdomaininfo, flags);
    CONST(XEN_DOMCTL_INTERFACE_VERSION);
    CONST(XEN_DOMCTL_getdomaininfo);
    CONST(XEN_DOMCTL_irq_permission);
    CONST(XEN_DOMCTL_iomem_permission);
    CONST(XEN_DOMCTL_ioport_permission);
    CONST(XEN_DOMCTL_bind_pt_irq);
    CONST(XEN_DOMCTL_memory_mapping);
    CONST(XEN_DOMCTL_ioport_mapping);
    CONST(XEN_DOMCTL_unbind_pt_irq);
    CONST(DPCI_ADD_MAPPING);
    CONST(DPCI_REMOVE_MAPPING);
    CONST(PT_IRQ_TYPE_PCI);
    CONST(PT_IRQ_TYPE_ISA);
    CONST(PT_IRQ_TYPE_MSI);
    CONST(PT_IRQ_TYPE_MSI_TRANSLATE);
    CONST(PT_IRQ_TYPE_SPI);
    CONST(XEN_DOMCTL_VMSI_X86_DEST_ID_MASK);
    CONST(XEN_DOMCTL_VMSI_X86_RH_MASK);
    CONST(XEN_DOMCTL_VMSI_X86_DM_MASK);
    CONST(XEN_DOMCTL_VMSI_X86_DELIV_MASK);
    CONST(XEN_DOMCTL_VMSI_X86_TRIG_MASK);
    CONST(XEN_DOMCTL_VMSI_X86_UNMASKED);
    CONST(XEN_DOMINF_dying);
    CONST(XEN_DOMINF_hvm_guest);
    CONST(XEN_DOMINF_shutdown);
    CONST(XEN_DOMINF_paused);
    CONST(XEN_DOMINF_blocked);
    CONST(XEN_DOMINF_running);
    CONST(XEN_DOMINF_shutdownshift);
    CONST(XEN_DOMINF_shutdownmask);

    /* ---- xen/physdev.h -------------------------------------------------------------------- */
    STRUCT(physdev_map_pirq);
    OFF(physdev_map_pirq, domid);
    OFF(physdev_map_pirq, type);
    OFF(physdev_map_pirq, index);
    OFF(physdev_map_pirq, pirq);
    OFF(physdev_map_pirq, bus);
    OFF(physdev_map_pirq, devfn);
    OFF(physdev_map_pirq, entry_nr);
    OFF(physdev_map_pirq, table_base);
    STRUCT(physdev_unmap_pirq);
    OFF(physdev_unmap_pirq, domid);
    OFF(physdev_unmap_pirq, pirq);
    CONST(PHYSDEVOP_map_pirq);
    CONST(PHYSDEVOP_unmap_pirq);
    CONST(MAP_PIRQ_TYPE_MSI);
    CONST(MAP_PIRQ_TYPE_GSI);
    CONST(MAP_PIRQ_TYPE_UNKNOWN);
    CONST(MAP_PIRQ_TYPE_MSI_SEG);
    CONST(MAP_PIRQ_TYPE_MULTI_MSI);

    /* ---- xen/memory.h --------------------------------------------------------------------- */
    STRUCT(xen_mem_acquire_resource);
    OFF(xen_mem_acquire_resource, domid);
    OFF(xen_mem_acquire_resource, type);
    OFF(xen_mem_acquire_resource, id);
    OFF(xen_mem_acquire_resource, nr_frames);
    OFF(xen_mem_acquire_resource, pad);
    OFF(xen_mem_acquire_resource, frame);
    OFF(xen_mem_acquire_resource, frame_list);
    CONST(XENMEM_acquire_resource);
    CONST(XENMEM_resource_ioreq_server);
    CONST(XENMEM_resource_grant_table);
    CONST(XENMEM_resource_vmtrace_buf);
    CONST(XENMEM_resource_ioreq_server_frame_bufioreq);
    FN(XENMEM_resource_ioreq_server_frame_ioreq(0));
    FN(XENMEM_resource_ioreq_server_frame_ioreq(3));

    /* ---- xen/io/xs_wire.h ----------------------------------------------------------------- */
    STRUCT(xsd_sockmsg);
    OFF(xsd_sockmsg, type);
    OFF(xsd_sockmsg, req_id);
    OFF(xsd_sockmsg, tx_id);
    OFF(xsd_sockmsg, len);
    STRUCT(xenstore_domain_interface);
    OFF(xenstore_domain_interface, req);
    OFF(xenstore_domain_interface, rsp);
    OFF(xenstore_domain_interface, req_cons);
    OFF(xenstore_domain_interface, req_prod);
    OFF(xenstore_domain_interface, rsp_cons);
    OFF(xenstore_domain_interface, rsp_prod);
    OFF(xenstore_domain_interface, server_features);
    OFF(xenstore_domain_interface, connection);
    OFF(xenstore_domain_interface, error);
    CONST(XS_CONTROL);
    CONST(XS_DEBUG);
    CONST(XS_DIRECTORY);
    CONST(XS_READ);
    CONST(XS_GET_PERMS);
    CONST(XS_WATCH);
    CONST(XS_UNWATCH);
    CONST(XS_TRANSACTION_START);
    CONST(XS_TRANSACTION_END);
    CONST(XS_INTRODUCE);
    CONST(XS_RELEASE);
    CONST(XS_GET_DOMAIN_PATH);
    CONST(XS_WRITE);
    CONST(XS_MKDIR);
    CONST(XS_RM);
    CONST(XS_SET_PERMS);
    CONST(XS_WATCH_EVENT);
    CONST(XS_ERROR);
    CONST(XS_IS_DOMAIN_INTRODUCED);
    CONST(XS_RESUME);
    CONST(XS_SET_TARGET);
    CONST(XS_RESET_WATCHES);
    CONST(XS_DIRECTORY_PART);
    CONST(XS_TYPE_COUNT);
    CONST(XS_INVALID);
    CONST(XS_WATCH_PATH);
    CONST(XS_WATCH_TOKEN);
    CONST(XENSTORE_PAYLOAD_MAX);
    CONST(XENSTORE_ABS_PATH_MAX);
    CONST(XENSTORE_REL_PATH_MAX);
    CONST(XENSTORE_RING_SIZE);
    CONST(XENSTORE_SERVER_FEATURE_RECONNECTION);
    CONST(XENSTORE_SERVER_FEATURE_ERROR);
    CONST(XENSTORE_CONNECTED);
    CONST(XENSTORE_RECONNECT);
    CONST(XENSTORE_ERROR_NONE);
    CONST(XENSTORE_ERROR_COMM);
    CONST(XENSTORE_ERROR_RINGIDX);
    CONST(XENSTORE_ERROR_PROTO);
    FN(MASK_XENSTORE_IDX(1025));
    emit("xsd_errors.count", sizeof(xsd_errors) / sizeof(xsd_errors[0]));
    for (i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++) {
        printf("xsd_error:%s %d\n", xsd_errors[i].errstring, xsd_errors[i].errnum);
        printf("xsd_error_index:%s %zu\n", xsd_errors[i].errstring, i);
    }

    return ferror(stdout) ? 1 : 0;
}
