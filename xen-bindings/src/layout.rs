//! Every size, alignment, field offset, bitfield position, ioctl number and constant this crate
//! mirrors from C, as one table keyed by the C name.
//!
//! `tests/c_layout.rs` compiles `tests/c_layout/layout.c` against the installed Xen headers
//! (`xen/hvm/ioreq.h`, `xen/hvm/dm_op.h`, `xen/domctl.h`, `xen/physdev.h`, `xen/memory.h`,
//! `xen/io/xs_wire.h`, `xen/sys/privcmd.h`, `xen/sys/evtchn.h`), which prints the same names with
//! the values C sees, and requires the two tables to be identical. The key forms are:
//!
//! - `sizeof:<struct>` / `alignof:<struct>`, and `sizeof:<struct>.<union member path>`;
//! - `offsetof:<struct>.<field path>` with C field names, e.g. `offsetof:xen_dm_op.u` or
//!   `offsetof:xen_domctl_bind_pt_irq.u.msi.gflags`;
//! - `bitfield:ioreq.<field>.byte` / `.mask`: set the bitfield to all ones in a zeroed `ioreq`; the
//!   one byte that changes and the bits that changed in it;
//! - `mask:buf_ioreq.<field>`: the same for `buf_ioreq`, read back as a native-endian u64;
//! - `ioctl:<IOCTL_NAME>`, `const:<C macro or enumerator>`, `fn:<macro invocation>`;
//! - `xsd_error:<NAME>` (errno) and `xsd_error_index:<NAME>` (position in `xsd_errors[]`).

use core::mem::{align_of, offset_of, size_of};

use bytemuck::Zeroable;

use crate::dm_op::*;
use crate::domctl::*;
use crate::evtchn::*;
use crate::hypercall::*;
use crate::ioreq::*;
use crate::memory::*;
use crate::physdev::*;
use crate::privcmd::*;
use crate::xs_wire::*;

/// Value of a `.byte` bitfield entry when setting the field changed no byte or several bytes.
pub const NOT_ONE_BYTE: u64 = u64::MAX;

/// `sizeof:` and `alignof:` of a struct.
macro_rules! sized {
    ($t:ident, $c:literal, $ty:ty) => {
        $t.push((concat!("sizeof:", $c), size_of::<$ty>() as u64));
        $t.push((concat!("alignof:", $c), align_of::<$ty>() as u64));
    };
}

/// `offsetof:` of fields (C name: Rust name), optionally below a union field of the struct
/// (`in u "u.msi"` adds `offset_of!(Outer, u)` and prefixes the C path).
macro_rules! fields {
    ($t:ident, $c:literal, $ty:ty { $($cf:literal: $rf:ident),* $(,)? }) => {
        $( $t.push((concat!("offsetof:", $c, ".", $cf), offset_of!($ty, $rf) as u64)); )*
    };
    ($t:ident, $c:literal, $outer:ty, in $uf:ident $path:literal, $ty:ty { $($cf:literal: $rf:ident),* $(,)? }) => {
        $t.push((concat!("sizeof:", $c, ".", $path), size_of::<$ty>() as u64));
        $(
            $t.push((
                concat!("offsetof:", $c, ".", $path, ".", $cf),
                (offset_of!($outer, $uf) + offset_of!($ty, $rf)) as u64,
            ));
        )*
    };
}

/// `const:`, `ioctl:` and `fn:` entries.
macro_rules! values {
    ($t:ident, $kind:literal { $($c:literal: $v:expr),* $(,)? }) => {
        $( $t.push((concat!($kind, ":", $c), $v as u64)); )*
    };
}

/// `xsd_error:` and `xsd_error_index:` of the named `xsd_errors[]` entries.
macro_rules! xsd_errors {
    ($t:ident { $($name:literal),* $(,)? }) => {
        $(
            let i = XSD_ERRORS.iter().position(|e| e.errstring == $name);
            $t.push((concat!("xsd_error:", $name), i.map_or(u64::MAX, |i| XSD_ERRORS[i].errnum as u64)));
            $t.push((concat!("xsd_error_index:", $name), i.map_or(u64::MAX, |i| i as u64)));
        )*
    };
}

/// `bitfield:ioreq.<field>.byte` and `.mask`, from a setter that sets the field to all ones.
macro_rules! ioreq_bitfield {
    ($t:ident, $f:literal, $set:expr) => {
        let (byte, mask) = ioreq_bitfield($set);
        $t.push((concat!("bitfield:ioreq.", $f, ".byte"), byte));
        $t.push((concat!("bitfield:ioreq.", $f, ".mask"), mask));
    };
}

/// Size of a field, given an accessor closure (for union fields kept as byte arrays).
fn field_size<T, F>(_: fn(&T) -> &F) -> u64 {
    size_of::<F>() as u64
}

/// Sets one bitfield of a zeroed `ioreq` to all ones (through the crate's accessors) and returns
/// the byte that changed and the changed bits, like the C side does.
fn ioreq_bitfield(set: fn(&mut Ioreq)) -> (u64, u64) {
    let zero = Ioreq::zeroed();
    let mut r = zero;
    set(&mut r);
    let (a, b) = (bytemuck::bytes_of(&zero), bytemuck::bytes_of(&r));
    let changed: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    match changed.as_slice() {
        [i] => (*i as u64, u64::from(a[*i] ^ b[*i])),
        _ => (NOT_ONE_BYTE, 0),
    }
}

/// A `buf_ioreq` slot with every field zero.
fn buf_zero() -> BufIoreq {
    BufIoreq { type_: 0, dir: 0, size_log2: 0, addr: 0, data: 0 }
}

/// The whole table. Names are unique; see the module documentation for their forms.
pub fn layout_table() -> Vec<(&'static str, u64)> {
    let mut t: Vec<(&'static str, u64)> = Vec::with_capacity(512);

    // ---- xen/hvm/ioreq.h ------------------------------------------------------------------
    sized!(t, "ioreq", Ioreq);
    fields!(t, "ioreq", Ioreq {
        "addr": addr, "data": data, "count": count, "size": size, "vp_eport": vp_eport,
        "_pad0": pad0, "type": type_,
    });
    ioreq_bitfield!(t, "state", |r| r.set_state(u8::MAX));
    ioreq_bitfield!(t, "data_is_ptr", |r| r.flags = Ioreq::make_flags(0, true, IOREQ_WRITE, false));
    ioreq_bitfield!(t, "dir", |r| r.flags = Ioreq::make_flags(0, false, IOREQ_READ, false));
    ioreq_bitfield!(t, "df", |r| r.flags = Ioreq::make_flags(0, false, IOREQ_WRITE, true));
    // `_pad1` has no accessor: it is whatever the other four leave of the byte.
    ioreq_bitfield!(t, "_pad1", |r| r.flags = !Ioreq::make_flags(u8::MAX, true, IOREQ_READ, true));
    t.push(("sizeof:buf_ioreq", buffered::SLOT_SIZE as u64));
    let type_mask = BufIoreq { type_: u8::MAX, ..buf_zero() }.encode();
    let dir_mask = BufIoreq { dir: u8::MAX, ..buf_zero() }.encode();
    let size_mask = BufIoreq { size_log2: u8::MAX, ..buf_zero() }.encode();
    let addr_mask = BufIoreq { addr: u32::MAX, ..buf_zero() }.encode();
    let data_mask = BufIoreq { data: u32::MAX, ..buf_zero() }.encode();
    t.push(("mask:buf_ioreq.type", type_mask));
    t.push(("mask:buf_ioreq.pad", !(type_mask | dir_mask | size_mask | addr_mask | data_mask)));
    t.push(("mask:buf_ioreq.dir", dir_mask));
    t.push(("mask:buf_ioreq.size", size_mask));
    t.push(("mask:buf_ioreq.addr", addr_mask));
    t.push(("mask:buf_ioreq.data", data_mask));
    t.push(("sizeof:buffered_iopage", (buffered::SLOTS + IOREQ_BUFFER_SLOT_NUM as usize * buffered::SLOT_SIZE) as u64));
    t.push(("offsetof:buffered_iopage.read_pointer", buffered::READ_POINTER as u64));
    t.push(("offsetof:buffered_iopage.write_pointer", buffered::WRITE_POINTER as u64));
    t.push(("offsetof:buffered_iopage.buf_ioreq", buffered::SLOTS as u64));
    values!(t, "const" {
        "IOREQ_READ": IOREQ_READ,
        "IOREQ_WRITE": IOREQ_WRITE,
        "STATE_IOREQ_NONE": STATE_IOREQ_NONE,
        "STATE_IOREQ_READY": STATE_IOREQ_READY,
        "STATE_IOREQ_INPROCESS": STATE_IOREQ_INPROCESS,
        "STATE_IORESP_READY": STATE_IORESP_READY,
        "IOREQ_TYPE_PIO": IOREQ_TYPE_PIO,
        "IOREQ_TYPE_COPY": IOREQ_TYPE_COPY,
        "IOREQ_TYPE_PCI_CONFIG": IOREQ_TYPE_PCI_CONFIG,
        "IOREQ_TYPE_TIMEOFFSET": IOREQ_TYPE_TIMEOFFSET,
        "IOREQ_TYPE_INVALIDATE": IOREQ_TYPE_INVALIDATE,
        "IOREQ_BUFFER_SLOT_NUM": IOREQ_BUFFER_SLOT_NUM,
        "HVM_IOREQSRV_BUFIOREQ_OFF": HVM_IOREQSRV_BUFIOREQ_OFF,
        "HVM_IOREQSRV_BUFIOREQ_LEGACY": HVM_IOREQSRV_BUFIOREQ_LEGACY,
        "HVM_IOREQSRV_BUFIOREQ_ATOMIC": HVM_IOREQSRV_BUFIOREQ_ATOMIC,
    });

    // ---- xen/hvm/dm_op.h ------------------------------------------------------------------
    t.push(("sizeof:xen_dm_op", size_of::<XenDmOp>() as u64));
    t.push(("alignof:xen_dm_op", align_of::<XenDmOp>() as u64));
    fields!(t, "xen_dm_op", XenDmOp { "op": op, "pad": pad, "u": u });
    t.push(("sizeof:xen_dm_op.u", field_size(|d: &XenDmOp| &d.u)));
    let member_sizes: [(&'static str, u32); 20] = [
        ("sizeof:xen_dm_op.u.create_ioreq_server", XEN_DMOP_CREATE_IOREQ_SERVER),
        ("sizeof:xen_dm_op.u.get_ioreq_server_info", XEN_DMOP_GET_IOREQ_SERVER_INFO),
        ("sizeof:xen_dm_op.u.map_io_range_to_ioreq_server", XEN_DMOP_MAP_IO_RANGE_TO_IOREQ_SERVER),
        ("sizeof:xen_dm_op.u.unmap_io_range_from_ioreq_server", XEN_DMOP_UNMAP_IO_RANGE_FROM_IOREQ_SERVER),
        ("sizeof:xen_dm_op.u.set_ioreq_server_state", XEN_DMOP_SET_IOREQ_SERVER_STATE),
        ("sizeof:xen_dm_op.u.destroy_ioreq_server", XEN_DMOP_DESTROY_IOREQ_SERVER),
        ("sizeof:xen_dm_op.u.track_dirty_vram", XEN_DMOP_TRACK_DIRTY_VRAM),
        ("sizeof:xen_dm_op.u.set_pci_intx_level", XEN_DMOP_SET_PCI_INTX_LEVEL),
        ("sizeof:xen_dm_op.u.set_isa_irq_level", XEN_DMOP_SET_ISA_IRQ_LEVEL),
        ("sizeof:xen_dm_op.u.set_pci_link_route", XEN_DMOP_SET_PCI_LINK_ROUTE),
        ("sizeof:xen_dm_op.u.modified_memory", XEN_DMOP_MODIFIED_MEMORY),
        ("sizeof:xen_dm_op.u.set_mem_type", XEN_DMOP_SET_MEM_TYPE),
        ("sizeof:xen_dm_op.u.inject_event", XEN_DMOP_INJECT_EVENT),
        ("sizeof:xen_dm_op.u.inject_msi", XEN_DMOP_INJECT_MSI),
        ("sizeof:xen_dm_op.u.map_mem_type_to_ioreq_server", XEN_DMOP_MAP_MEM_TYPE_TO_IOREQ_SERVER),
        ("sizeof:xen_dm_op.u.remote_shutdown", XEN_DMOP_REMOTE_SHUTDOWN),
        ("sizeof:xen_dm_op.u.relocate_memory", XEN_DMOP_RELOCATE_MEMORY),
        ("sizeof:xen_dm_op.u.pin_memory_cacheattr", XEN_DMOP_PIN_MEMORY_CACHEATTR),
        ("sizeof:xen_dm_op.u.set_irq_level", XEN_DMOP_SET_IRQ_LEVEL),
        ("sizeof:xen_dm_op.u.nr_vcpus", XEN_DMOP_NR_VCPUS),
    ];
    for (name, op) in member_sizes {
        // The op -> payload mapping Xen's op_size[] uses, as DmOp::payload_size encodes it.
        t.push((name, DmOp::payload_size(op).map_or(u64::MAX, |s| s as u64)));
    }
    sized!(t, "xen_dm_op_create_ioreq_server", CreateIoreqServer);
    fields!(t, "xen_dm_op_create_ioreq_server", CreateIoreqServer {
        "handle_bufioreq": handle_bufioreq, "pad": pad, "id": id,
    });
    sized!(t, "xen_dm_op_get_ioreq_server_info", GetIoreqServerInfo);
    fields!(t, "xen_dm_op_get_ioreq_server_info", GetIoreqServerInfo {
        "id": id, "flags": flags, "bufioreq_port": bufioreq_port, "ioreq_gfn": ioreq_gfn,
        "bufioreq_gfn": bufioreq_gfn,
    });
    sized!(t, "xen_dm_op_ioreq_server_range", IoreqServerRange);
    fields!(t, "xen_dm_op_ioreq_server_range", IoreqServerRange {
        "id": id, "pad": pad, "type": type_, "start": start, "end": end,
    });
    sized!(t, "xen_dm_op_set_ioreq_server_state", SetIoreqServerState);
    fields!(t, "xen_dm_op_set_ioreq_server_state", SetIoreqServerState { "id": id, "enabled": enabled, "pad": pad });
    sized!(t, "xen_dm_op_destroy_ioreq_server", DestroyIoreqServer);
    fields!(t, "xen_dm_op_destroy_ioreq_server", DestroyIoreqServer { "id": id, "pad": pad });
    sized!(t, "xen_dm_op_track_dirty_vram", TrackDirtyVram);
    fields!(t, "xen_dm_op_track_dirty_vram", TrackDirtyVram { "nr": nr, "pad": pad, "first_pfn": first_pfn });
    sized!(t, "xen_dm_op_set_pci_intx_level", SetPciIntxLevel);
    fields!(t, "xen_dm_op_set_pci_intx_level", SetPciIntxLevel {
        "domain": domain, "bus": bus, "device": device, "intx": intx, "level": level,
    });
    sized!(t, "xen_dm_op_set_isa_irq_level", SetIsaIrqLevel);
    fields!(t, "xen_dm_op_set_isa_irq_level", SetIsaIrqLevel { "isa_irq": isa_irq, "level": level });
    sized!(t, "xen_dm_op_set_pci_link_route", SetPciLinkRoute);
    fields!(t, "xen_dm_op_set_pci_link_route", SetPciLinkRoute { "link": link, "isa_irq": isa_irq });
    sized!(t, "xen_dm_op_modified_memory", ModifiedMemory);
    fields!(t, "xen_dm_op_modified_memory", ModifiedMemory { "nr_extents": nr_extents, "opaque": opaque });
    sized!(t, "xen_dm_op_modified_memory_extent", ModifiedMemoryExtent);
    fields!(t, "xen_dm_op_modified_memory_extent", ModifiedMemoryExtent {
        "nr": nr, "pad": pad, "first_pfn": first_pfn,
    });
    sized!(t, "xen_dm_op_set_mem_type", SetMemType);
    fields!(t, "xen_dm_op_set_mem_type", SetMemType {
        "nr": nr, "mem_type": mem_type, "pad": pad, "first_pfn": first_pfn,
    });
    sized!(t, "xen_dm_op_inject_event", InjectEvent);
    fields!(t, "xen_dm_op_inject_event", InjectEvent {
        "vcpuid": vcpuid, "vector": vector, "type": type_, "insn_len": insn_len, "pad0": pad0,
        "error_code": error_code, "pad1": pad1, "cr2": cr2,
    });
    sized!(t, "xen_dm_op_inject_msi", InjectMsi);
    fields!(t, "xen_dm_op_inject_msi", InjectMsi { "data": data, "pad": pad, "addr": addr });
    sized!(t, "xen_dm_op_map_mem_type_to_ioreq_server", MapMemTypeToIoreqServer);
    fields!(t, "xen_dm_op_map_mem_type_to_ioreq_server", MapMemTypeToIoreqServer {
        "id": id, "type": type_, "flags": flags, "opaque": opaque,
    });
    sized!(t, "xen_dm_op_remote_shutdown", RemoteShutdown);
    fields!(t, "xen_dm_op_remote_shutdown", RemoteShutdown { "reason": reason });
    sized!(t, "xen_dm_op_relocate_memory", RelocateMemory);
    fields!(t, "xen_dm_op_relocate_memory", RelocateMemory {
        "size": size, "pad": pad, "src_gfn": src_gfn, "dst_gfn": dst_gfn,
    });
    sized!(t, "xen_dm_op_pin_memory_cacheattr", PinMemoryCacheattr);
    fields!(t, "xen_dm_op_pin_memory_cacheattr", PinMemoryCacheattr {
        "start": start, "end": end, "type": type_, "pad": pad,
    });
    sized!(t, "xen_dm_op_set_irq_level", SetIrqLevel);
    fields!(t, "xen_dm_op_set_irq_level", SetIrqLevel { "irq": irq, "level": level, "pad": pad });
    sized!(t, "xen_dm_op_nr_vcpus", NrVcpus);
    fields!(t, "xen_dm_op_nr_vcpus", NrVcpus { "vcpus": vcpus });
    sized!(t, "xen_dm_op_buf", XenDmOpBuf);
    fields!(t, "xen_dm_op_buf", XenDmOpBuf { "h": h, "size": size });
    values!(t, "const" {
        "XEN_DMOP_create_ioreq_server": XEN_DMOP_CREATE_IOREQ_SERVER,
        "XEN_DMOP_get_ioreq_server_info": XEN_DMOP_GET_IOREQ_SERVER_INFO,
        "XEN_DMOP_map_io_range_to_ioreq_server": XEN_DMOP_MAP_IO_RANGE_TO_IOREQ_SERVER,
        "XEN_DMOP_unmap_io_range_from_ioreq_server": XEN_DMOP_UNMAP_IO_RANGE_FROM_IOREQ_SERVER,
        "XEN_DMOP_set_ioreq_server_state": XEN_DMOP_SET_IOREQ_SERVER_STATE,
        "XEN_DMOP_destroy_ioreq_server": XEN_DMOP_DESTROY_IOREQ_SERVER,
        "XEN_DMOP_track_dirty_vram": XEN_DMOP_TRACK_DIRTY_VRAM,
        "XEN_DMOP_set_pci_intx_level": XEN_DMOP_SET_PCI_INTX_LEVEL,
        "XEN_DMOP_set_isa_irq_level": XEN_DMOP_SET_ISA_IRQ_LEVEL,
        "XEN_DMOP_set_pci_link_route": XEN_DMOP_SET_PCI_LINK_ROUTE,
        "XEN_DMOP_modified_memory": XEN_DMOP_MODIFIED_MEMORY,
        "XEN_DMOP_set_mem_type": XEN_DMOP_SET_MEM_TYPE,
        "XEN_DMOP_inject_event": XEN_DMOP_INJECT_EVENT,
        "XEN_DMOP_inject_msi": XEN_DMOP_INJECT_MSI,
        "XEN_DMOP_map_mem_type_to_ioreq_server": XEN_DMOP_MAP_MEM_TYPE_TO_IOREQ_SERVER,
        "XEN_DMOP_remote_shutdown": XEN_DMOP_REMOTE_SHUTDOWN,
        "XEN_DMOP_relocate_memory": XEN_DMOP_RELOCATE_MEMORY,
        "XEN_DMOP_pin_memory_cacheattr": XEN_DMOP_PIN_MEMORY_CACHEATTR,
        "XEN_DMOP_set_irq_level": XEN_DMOP_SET_IRQ_LEVEL,
        "XEN_DMOP_nr_vcpus": XEN_DMOP_NR_VCPUS,
        "XEN_DMOP_IO_RANGE_PORT": XEN_DMOP_IO_RANGE_PORT,
        "XEN_DMOP_IO_RANGE_MEMORY": XEN_DMOP_IO_RANGE_MEMORY,
        "XEN_DMOP_IO_RANGE_PCI": XEN_DMOP_IO_RANGE_PCI,
        "XEN_DMOP_no_gfns": XEN_DMOP_NO_GFNS,
        "SHUTDOWN_poweroff": SHUTDOWN_POWEROFF,
        "SHUTDOWN_reboot": SHUTDOWN_REBOOT,
        "SHUTDOWN_suspend": SHUTDOWN_SUSPEND,
        "SHUTDOWN_crash": SHUTDOWN_CRASH,
    });
    values!(t, "fn" {
        "XEN_DMOP_PCI_SBDF(1,2,3,4)": pci_sbdf(1, 2, 3, 4),
        // Unsigned on the C side: with int arguments the macro shifts segment bit 15 into the sign.
        "XEN_DMOP_PCI_SBDF(0xffffu,0xffu,0x1fu,7u)": pci_sbdf(0xffff, 0xff, 0x1f, 7),
    });

    // ---- xen/sys/privcmd.h ----------------------------------------------------------------
    sized!(t, "privcmd_hypercall", PrivcmdHypercall);
    fields!(t, "privcmd_hypercall", PrivcmdHypercall { "op": op, "arg": arg });
    sized!(t, "privcmd_mmapbatch_v2", PrivcmdMmapBatchV2);
    fields!(t, "privcmd_mmapbatch_v2", PrivcmdMmapBatchV2 {
        "num": num, "dom": dom, "addr": addr, "arr": arr, "err": err,
    });
    sized!(t, "privcmd_dm_op_buf", PrivcmdDmOpBuf);
    fields!(t, "privcmd_dm_op_buf", PrivcmdDmOpBuf { "uptr": uptr, "size": size });
    sized!(t, "privcmd_dm_op", PrivcmdDmOp);
    fields!(t, "privcmd_dm_op", PrivcmdDmOp { "dom": dom, "num": num, "ubufs": ubufs });
    sized!(t, "privcmd_mmap_resource", PrivcmdMmapResource);
    fields!(t, "privcmd_mmap_resource", PrivcmdMmapResource {
        "dom": dom, "type": type_, "id": id, "idx": idx, "num": num, "addr": addr,
    });
    values!(t, "ioctl" {
        "IOCTL_PRIVCMD_HYPERCALL": IOCTL_PRIVCMD_HYPERCALL,
        "IOCTL_PRIVCMD_MMAPBATCH_V2": IOCTL_PRIVCMD_MMAPBATCH_V2,
        "IOCTL_PRIVCMD_DM_OP": IOCTL_PRIVCMD_DM_OP,
        "IOCTL_PRIVCMD_RESTRICT": IOCTL_PRIVCMD_RESTRICT,
        "IOCTL_PRIVCMD_MMAP_RESOURCE": IOCTL_PRIVCMD_MMAP_RESOURCE,
    });
    values!(t, "const" { "_IOC_NONE": IOC_NONE, "_IOC_WRITE": IOC_WRITE, "_IOC_READ": IOC_READ });

    // ---- xen/sys/evtchn.h -----------------------------------------------------------------
    sized!(t, "ioctl_evtchn_bind_virq", IoctlEvtchnBindVirq);
    fields!(t, "ioctl_evtchn_bind_virq", IoctlEvtchnBindVirq { "virq": virq });
    sized!(t, "ioctl_evtchn_bind_interdomain", IoctlEvtchnBindInterdomain);
    fields!(t, "ioctl_evtchn_bind_interdomain", IoctlEvtchnBindInterdomain {
        "remote_domain": remote_domain, "remote_port": remote_port,
    });
    sized!(t, "ioctl_evtchn_bind_unbound_port", IoctlEvtchnBindUnboundPort);
    fields!(t, "ioctl_evtchn_bind_unbound_port", IoctlEvtchnBindUnboundPort { "remote_domain": remote_domain });
    sized!(t, "ioctl_evtchn_unbind", IoctlEvtchnUnbind);
    fields!(t, "ioctl_evtchn_unbind", IoctlEvtchnUnbind { "port": port });
    sized!(t, "ioctl_evtchn_notify", IoctlEvtchnNotify);
    fields!(t, "ioctl_evtchn_notify", IoctlEvtchnNotify { "port": port });
    sized!(t, "ioctl_evtchn_restrict_domid", IoctlEvtchnRestrictDomid);
    fields!(t, "ioctl_evtchn_restrict_domid", IoctlEvtchnRestrictDomid { "domid": domid });
    values!(t, "ioctl" {
        "IOCTL_EVTCHN_BIND_VIRQ": IOCTL_EVTCHN_BIND_VIRQ,
        "IOCTL_EVTCHN_BIND_INTERDOMAIN": IOCTL_EVTCHN_BIND_INTERDOMAIN,
        "IOCTL_EVTCHN_BIND_UNBOUND_PORT": IOCTL_EVTCHN_BIND_UNBOUND_PORT,
        "IOCTL_EVTCHN_UNBIND": IOCTL_EVTCHN_UNBIND,
        "IOCTL_EVTCHN_NOTIFY": IOCTL_EVTCHN_NOTIFY,
        "IOCTL_EVTCHN_RESET": IOCTL_EVTCHN_RESET,
        "IOCTL_EVTCHN_RESTRICT_DOMID": IOCTL_EVTCHN_RESTRICT_DOMID,
    });

    // ---- xen/xen.h ------------------------------------------------------------------------
    values!(t, "const" {
        "__HYPERVISOR_memory_op": HYPERVISOR_MEMORY_OP,
        "__HYPERVISOR_sched_op": HYPERVISOR_SCHED_OP,
        "__HYPERVISOR_event_channel_op": HYPERVISOR_EVENT_CHANNEL_OP,
        "__HYPERVISOR_physdev_op": HYPERVISOR_PHYSDEV_OP,
        "__HYPERVISOR_domctl": HYPERVISOR_DOMCTL,
        "__HYPERVISOR_dm_op": HYPERVISOR_DM_OP,
        "DOMID_FIRST_RESERVED": DOMID_FIRST_RESERVED,
        "DOMID_SELF": DOMID_SELF,
        "DOMID_INVALID": DOMID_INVALID,
        "DOMID_IDLE": DOMID_IDLE,
    });

    // ---- xen/domctl.h ---------------------------------------------------------------------
    sized!(t, "xen_domctl", XenDomctl);
    fields!(t, "xen_domctl", XenDomctl {
        "cmd": cmd, "interface_version": interface_version, "domain": domain, "_pad": pad, "u": u,
    });
    t.push(("sizeof:xen_domctl.u", field_size(|d: &XenDomctl| &d.u)));
    sized!(t, "xen_domctl_memory_mapping", MemoryMapping);
    fields!(t, "xen_domctl_memory_mapping", MemoryMapping {
        "first_gfn": first_gfn, "first_mfn": first_mfn, "nr_mfns": nr_mfns, "add_mapping": add_mapping,
        "padding": padding,
    });
    sized!(t, "xen_domctl_ioport_mapping", IoportMapping);
    fields!(t, "xen_domctl_ioport_mapping", IoportMapping {
        "first_gport": first_gport, "first_mport": first_mport, "nr_ports": nr_ports, "add_mapping": add_mapping,
    });
    sized!(t, "xen_domctl_bind_pt_irq", BindPtIrq);
    fields!(t, "xen_domctl_bind_pt_irq", BindPtIrq { "machine_irq": machine_irq, "irq_type": irq_type, "u": u });
    t.push(("sizeof:xen_domctl_bind_pt_irq.u", field_size(|b: &BindPtIrq| &b.u)));
    fields!(t, "xen_domctl_bind_pt_irq", BindPtIrq, in u "u.isa", PtIrqIsa { "isa_irq": isa_irq });
    fields!(t, "xen_domctl_bind_pt_irq", BindPtIrq, in u "u.pci", PtIrqPci {
        "bus": bus, "device": device, "intx": intx,
    });
    fields!(t, "xen_domctl_bind_pt_irq", BindPtIrq, in u "u.msi", PtIrqMsi {
        "gvec": gvec, "gflags": gflags, "gtable": gtable,
    });
    fields!(t, "xen_domctl_bind_pt_irq", BindPtIrq, in u "u.spi", PtIrqSpi { "spi": spi });
    sized!(t, "xen_domctl_irq_permission", IrqPermission);
    fields!(t, "xen_domctl_irq_permission", IrqPermission { "pirq": pirq, "allow_access": allow_access, "pad": pad });
    sized!(t, "xen_domctl_iomem_permission", IomemPermission);
    fields!(t, "xen_domctl_iomem_permission", IomemPermission {
        "first_mfn": first_mfn, "nr_mfns": nr_mfns, "allow_access": allow_access,
    });
    sized!(t, "xen_domctl_ioport_permission", IoportPermission);
    fields!(t, "xen_domctl_ioport_permission", IoportPermission {
        "first_port": first_port, "nr_ports": nr_ports, "allow_access": allow_access,
    });
    // Only the head of getdomaininfo is mirrored, so no sizeof.
    fields!(t, "xen_domctl_getdomaininfo", GetDomainInfoHead { "domain": domain, "pad1": pad1, "flags": flags });
    values!(t, "const" {
        "XEN_DOMCTL_INTERFACE_VERSION": DomctlVersion::HEADERS.raw(),
        "XEN_DOMCTL_getdomaininfo": XEN_DOMCTL_GETDOMAININFO,
        "XEN_DOMCTL_irq_permission": XEN_DOMCTL_IRQ_PERMISSION,
        "XEN_DOMCTL_iomem_permission": XEN_DOMCTL_IOMEM_PERMISSION,
        "XEN_DOMCTL_ioport_permission": XEN_DOMCTL_IOPORT_PERMISSION,
        "XEN_DOMCTL_bind_pt_irq": XEN_DOMCTL_BIND_PT_IRQ,
        "XEN_DOMCTL_memory_mapping": XEN_DOMCTL_MEMORY_MAPPING,
        "XEN_DOMCTL_ioport_mapping": XEN_DOMCTL_IOPORT_MAPPING,
        "XEN_DOMCTL_unbind_pt_irq": XEN_DOMCTL_UNBIND_PT_IRQ,
        "DPCI_ADD_MAPPING": DPCI_ADD_MAPPING,
        "DPCI_REMOVE_MAPPING": DPCI_REMOVE_MAPPING,
        "PT_IRQ_TYPE_PCI": PT_IRQ_TYPE_PCI,
        "PT_IRQ_TYPE_ISA": PT_IRQ_TYPE_ISA,
        "PT_IRQ_TYPE_MSI": PT_IRQ_TYPE_MSI,
        "PT_IRQ_TYPE_MSI_TRANSLATE": PT_IRQ_TYPE_MSI_TRANSLATE,
        "PT_IRQ_TYPE_SPI": PT_IRQ_TYPE_SPI,
        "XEN_DOMCTL_VMSI_X86_DEST_ID_MASK": XEN_DOMCTL_VMSI_X86_DEST_ID_MASK,
        "XEN_DOMCTL_VMSI_X86_RH_MASK": XEN_DOMCTL_VMSI_X86_RH_MASK,
        "XEN_DOMCTL_VMSI_X86_DM_MASK": XEN_DOMCTL_VMSI_X86_DM_MASK,
        "XEN_DOMCTL_VMSI_X86_DELIV_MASK": XEN_DOMCTL_VMSI_X86_DELIV_MASK,
        "XEN_DOMCTL_VMSI_X86_TRIG_MASK": XEN_DOMCTL_VMSI_X86_TRIG_MASK,
        "XEN_DOMCTL_VMSI_X86_UNMASKED": XEN_DOMCTL_VMSI_X86_UNMASKED,
        "XEN_DOMINF_dying": XEN_DOMINF_DYING,
        "XEN_DOMINF_hvm_guest": XEN_DOMINF_HVM_GUEST,
        "XEN_DOMINF_shutdown": XEN_DOMINF_SHUTDOWN,
        "XEN_DOMINF_paused": XEN_DOMINF_PAUSED,
        "XEN_DOMINF_blocked": XEN_DOMINF_BLOCKED,
        "XEN_DOMINF_running": XEN_DOMINF_RUNNING,
        "XEN_DOMINF_shutdownshift": XEN_DOMINF_SHUTDOWNSHIFT,
        "XEN_DOMINF_shutdownmask": XEN_DOMINF_SHUTDOWNMASK,
    });

    // ---- xen/physdev.h --------------------------------------------------------------------
    sized!(t, "physdev_map_pirq", PhysdevMapPirq);
    fields!(t, "physdev_map_pirq", PhysdevMapPirq {
        "domid": domid, "type": type_, "index": index, "pirq": pirq, "bus": bus, "devfn": devfn,
        "entry_nr": entry_nr, "table_base": table_base,
    });
    sized!(t, "physdev_unmap_pirq", PhysdevUnmapPirq);
    fields!(t, "physdev_unmap_pirq", PhysdevUnmapPirq { "domid": domid, "pirq": pirq });
    values!(t, "const" {
        "PHYSDEVOP_map_pirq": PHYSDEVOP_MAP_PIRQ,
        "PHYSDEVOP_unmap_pirq": PHYSDEVOP_UNMAP_PIRQ,
        "MAP_PIRQ_TYPE_MSI": MAP_PIRQ_TYPE_MSI,
        "MAP_PIRQ_TYPE_GSI": MAP_PIRQ_TYPE_GSI,
        "MAP_PIRQ_TYPE_UNKNOWN": MAP_PIRQ_TYPE_UNKNOWN,
        "MAP_PIRQ_TYPE_MSI_SEG": MAP_PIRQ_TYPE_MSI_SEG,
        "MAP_PIRQ_TYPE_MULTI_MSI": MAP_PIRQ_TYPE_MULTI_MSI,
    });

    // ---- xen/memory.h ---------------------------------------------------------------------
    sized!(t, "xen_mem_acquire_resource", XenMemAcquireResource);
    fields!(t, "xen_mem_acquire_resource", XenMemAcquireResource {
        "domid": domid, "type": type_, "id": id, "nr_frames": nr_frames, "pad": pad, "frame": frame,
        "frame_list": frame_list,
    });
    values!(t, "const" {
        "XENMEM_acquire_resource": XENMEM_ACQUIRE_RESOURCE,
        "XENMEM_resource_ioreq_server": XENMEM_RESOURCE_IOREQ_SERVER,
        "XENMEM_resource_grant_table": XENMEM_RESOURCE_GRANT_TABLE,
        "XENMEM_resource_vmtrace_buf": XENMEM_RESOURCE_VMTRACE_BUF,
        "XENMEM_resource_ioreq_server_frame_bufioreq": XENMEM_RESOURCE_IOREQ_SERVER_FRAME_BUFIOREQ,
    });
    values!(t, "fn" {
        "XENMEM_resource_ioreq_server_frame_ioreq(0)": xenmem_resource_ioreq_server_frame_ioreq(0),
        "XENMEM_resource_ioreq_server_frame_ioreq(3)": xenmem_resource_ioreq_server_frame_ioreq(3),
    });

    // ---- xen/io/xs_wire.h -----------------------------------------------------------------
    sized!(t, "xsd_sockmsg", XsdSockmsg);
    fields!(t, "xsd_sockmsg", XsdSockmsg { "type": type_, "req_id": req_id, "tx_id": tx_id, "len": len });
    sized!(t, "xenstore_domain_interface", XenstoreDomainInterface);
    fields!(t, "xenstore_domain_interface", XenstoreDomainInterface {
        "req": req, "rsp": rsp, "req_cons": req_cons, "req_prod": req_prod, "rsp_cons": rsp_cons,
        "rsp_prod": rsp_prod, "server_features": server_features, "connection": connection, "error": error,
    });
    values!(t, "const" {
        "XS_CONTROL": XsdSockmsgType::Control.as_u32(),
        "XS_DEBUG": XsdSockmsgType::Control.as_u32(),
        "XS_DIRECTORY": XsdSockmsgType::Directory.as_u32(),
        "XS_READ": XsdSockmsgType::Read.as_u32(),
        "XS_GET_PERMS": XsdSockmsgType::GetPerms.as_u32(),
        "XS_WATCH": XsdSockmsgType::Watch.as_u32(),
        "XS_UNWATCH": XsdSockmsgType::Unwatch.as_u32(),
        "XS_TRANSACTION_START": XsdSockmsgType::TransactionStart.as_u32(),
        "XS_TRANSACTION_END": XsdSockmsgType::TransactionEnd.as_u32(),
        "XS_INTRODUCE": XsdSockmsgType::Introduce.as_u32(),
        "XS_RELEASE": XsdSockmsgType::Release.as_u32(),
        "XS_GET_DOMAIN_PATH": XsdSockmsgType::GetDomainPath.as_u32(),
        "XS_WRITE": XsdSockmsgType::Write.as_u32(),
        "XS_MKDIR": XsdSockmsgType::Mkdir.as_u32(),
        "XS_RM": XsdSockmsgType::Rm.as_u32(),
        "XS_SET_PERMS": XsdSockmsgType::SetPerms.as_u32(),
        "XS_WATCH_EVENT": XsdSockmsgType::WatchEvent.as_u32(),
        "XS_ERROR": XsdSockmsgType::Error.as_u32(),
        "XS_IS_DOMAIN_INTRODUCED": XsdSockmsgType::IsDomainIntroduced.as_u32(),
        "XS_RESUME": XsdSockmsgType::Resume.as_u32(),
        "XS_SET_TARGET": XsdSockmsgType::SetTarget.as_u32(),
        "XS_RESET_WATCHES": XsdSockmsgType::ResetWatches.as_u32(),
        "XS_DIRECTORY_PART": XsdSockmsgType::DirectoryPart.as_u32(),
        "XS_TYPE_COUNT": XS_TYPE_COUNT,
        "XS_INVALID": XS_INVALID,
        "XS_WATCH_PATH": XS_WATCH_PATH,
        "XS_WATCH_TOKEN": XS_WATCH_TOKEN,
        "XENSTORE_PAYLOAD_MAX": XENSTORE_PAYLOAD_MAX,
        "XENSTORE_ABS_PATH_MAX": XENSTORE_ABS_PATH_MAX,
        "XENSTORE_REL_PATH_MAX": XENSTORE_REL_PATH_MAX,
        "XENSTORE_RING_SIZE": XENSTORE_RING_SIZE,
        "XENSTORE_SERVER_FEATURE_RECONNECTION": XENSTORE_SERVER_FEATURE_RECONNECTION,
        "XENSTORE_SERVER_FEATURE_ERROR": XENSTORE_SERVER_FEATURE_ERROR,
        "XENSTORE_CONNECTED": XENSTORE_CONNECTED,
        "XENSTORE_RECONNECT": XENSTORE_RECONNECT,
        "XENSTORE_ERROR_NONE": XENSTORE_ERROR_NONE,
        "XENSTORE_ERROR_COMM": XENSTORE_ERROR_COMM,
        "XENSTORE_ERROR_RINGIDX": XENSTORE_ERROR_RINGIDX,
        "XENSTORE_ERROR_PROTO": XENSTORE_ERROR_PROTO,
    });
    values!(t, "fn" { "MASK_XENSTORE_IDX(1025)": mask_xenstore_idx(1025) });
    t.push(("xsd_errors.count", XSD_ERRORS.len() as u64));
    xsd_errors!(t {
        "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO", "ENOTEMPTY",
        "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
    });

    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_well_formed() {
        let t = layout_table();
        let mut seen = HashSet::new();
        for (name, _) in &t {
            assert!(seen.insert(*name), "duplicate layout entry {name}");
            assert!(!name.contains(char::is_whitespace), "whitespace in {name:?}");
            let kind = name.split(':').next().unwrap_or_default();
            assert!(
                [
                    "sizeof",
                    "alignof",
                    "offsetof",
                    "bitfield",
                    "mask",
                    "ioctl",
                    "const",
                    "fn",
                    "xsd_error",
                    "xsd_error_index",
                    "xsd_errors.count"
                ]
                .contains(&kind),
                "unknown kind in {name}"
            );
        }
        assert!(t.len() > 150, "only {} entries", t.len());
    }

    #[test]
    fn covers_every_message_type_and_error() {
        let t = layout_table();
        let has = |n: String| t.iter().any(|(k, _)| *k == n);
        for ty in XsdSockmsgType::ALL {
            assert!(has(format!("const:{}", ty.name())), "{} missing from the layout table", ty.name());
        }
        for e in XSD_ERRORS {
            assert!(has(format!("xsd_error:{}", e.errstring)), "{} missing from the layout table", e.errstring);
        }
    }

    #[test]
    fn bitfields_match_the_reference() {
        let t = layout_table();
        let get = |n: &str| t.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        assert_eq!(get("bitfield:ioreq.state.byte"), Some(30));
        assert_eq!(get("bitfield:ioreq.state.mask"), Some(0x0f));
        assert_eq!(get("bitfield:ioreq.dir.mask"), Some(0x20));
        assert_eq!(get("bitfield:ioreq._pad1.mask"), Some(0x80));
        assert_eq!(get("mask:buf_ioreq.pad"), Some(1 << 8));
        assert_eq!(get("mask:buf_ioreq.addr"), Some(0xfffff << 12));
    }
}
