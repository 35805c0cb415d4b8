//! The `/dev/vfpgaN` ioctl interface: Rust twins of `kmod/uapi/vfpga_ioctl.h` (held
//! equal by `tests/ioctl_layout.rs`) and the raw calls.

use std::io;
use std::os::fd::RawFd;

use vfpga_proto::MAX_ARGS;

/// `VFPGA_IOC_MAGIC`.
pub const MAGIC: u8 = 0xF6;

/// `struct vfpga_ioc_arg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IocArg {
    /// `VFPGA_ARG_*`.
    pub kind: u8,
    /// `VFPGA_T_*`.
    pub ty: u8,
    /// Zero, or [`ARG_REGISTERED`].
    pub flags: u16,
    /// The registered buffer's id with [`ARG_REGISTERED`], else zero.
    pub buf_id: u32,
    /// Scalar bits or buffer length.
    pub value: u64,
    /// Buffer address in this process, or offset in the registered buffer.
    pub addr: u64,
}

/// `VFPGA_IOC_ARG_REGISTERED`: the buffer is a range of a registered buffer.
pub const ARG_REGISTERED: u16 = 1;

/// `VFPGA_REG_READ_ONLY`: the device only reads a registered buffer.
pub const REG_READ_ONLY: u32 = 1;

/// `struct vfpga_ioc_register`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IocRegister {
    /// Buffer address in this process.
    pub addr: u64,
    /// Bytes.
    pub len: u64,
    /// Zero or [`REG_READ_ONLY`].
    pub flags: u32,
    /// Out: the buffer's id in this open file.
    pub id: u32,
    /// Out: physically contiguous stretches of the buffer.
    pub segments: u32,
    /// Zero.
    pub reserved: u32,
}

/// `struct vfpga_ioc_run`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IocRun {
    /// Session id.
    pub session: u64,
    /// Used entries of `args`.
    pub n_args: u32,
    /// Zero.
    pub flags: u32,
    /// Arguments.
    pub args: [IocArg; MAX_ARGS],
    /// Out: status.
    pub status: u16,
    /// Out: descriptors of the chain (at most 65535).
    pub segments: u16,
    /// Out: detail.
    pub detail: u32,
    /// Out: bytes written into outputs.
    pub written: u64,
    /// Out: engine time.
    pub duration_ns: u64,
}

/// `struct vfpga_ioc_list`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IocList {
    /// Address of a `vfpga_kernel_desc` array.
    pub descs: u64,
    /// First kernel index.
    pub start: u32,
    /// Records the array holds.
    pub capacity: u32,
    /// Out: records written.
    pub count: u32,
    /// Out: kernels in the catalogue.
    pub total: u32,
    /// Out: status.
    pub status: u16,
    /// Zero.
    pub reserved: [u16; 3],
}

/// `struct vfpga_ioc_session`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IocSession {
    /// Kernel or bitstream name, NUL-terminated.
    pub name: [u8; 32],
    /// Session id (out for open, in for close).
    pub session: u64,
    /// Out: status.
    pub status: u16,
    /// Zero.
    pub reserved: [u16; 3],
}

/// `struct vfpga_ioc_info`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
pub struct IocInfo {
    /// `struct vfpga_info` as the device sent it (little-endian).
    pub info: [u8; vfpga_proto::DeviceInfo::SIZE],
    /// Out: status.
    pub status: u16,
    /// Zero.
    pub reserved: [u16; 3],
}

/// `struct vfpga_ioc_stats`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
pub struct IocStats {
    /// Session, or 0 for the device.
    pub session: u64,
    /// `struct vfpga_stats` as the device sent it.
    pub stats: [u8; vfpga_proto::Stats::SIZE],
    /// Out: status.
    pub status: u16,
    /// Zero.
    pub reserved: [u16; 3],
}

/// `struct vfpga_ioc_limits`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
pub struct IocLimits {
    /// `struct vfpga_limits` as the device sent it (little-endian).
    pub limits: [u8; vfpga_proto::Limits::SIZE],
    /// Out: status.
    pub status: u16,
    /// Zero.
    pub reserved: [u16; 3],
}

/// `struct vfpga_ioc_nop`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IocNop {
    /// Out: round trip seen by the driver.
    pub duration_ns: u64,
    /// Out: status.
    pub status: u16,
    /// Zero.
    pub reserved: [u16; 3],
}

const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    dir << 30 | (size as u64) << 16 | (MAGIC as u64) << 8 | nr
}

/// `VFPGA_IOC_INFO`.
pub const INFO: u64 = ioc(IOC_READ, 0, size_of::<IocInfo>());
/// `VFPGA_IOC_LIST_KERNELS`.
pub const LIST_KERNELS: u64 = ioc(IOC_READ | IOC_WRITE, 1, size_of::<IocList>());
/// `VFPGA_IOC_OPEN_SESSION`.
pub const OPEN_SESSION: u64 = ioc(IOC_READ | IOC_WRITE, 2, size_of::<IocSession>());
/// `VFPGA_IOC_CLOSE_SESSION`.
pub const CLOSE_SESSION: u64 = ioc(IOC_READ | IOC_WRITE, 3, size_of::<IocSession>());
/// `VFPGA_IOC_RUN`.
pub const RUN: u64 = ioc(IOC_READ | IOC_WRITE, 4, size_of::<IocRun>());
/// `VFPGA_IOC_LOAD_BITSTREAM`.
pub const LOAD_BITSTREAM: u64 = ioc(IOC_READ | IOC_WRITE, 5, size_of::<IocSession>());
/// `VFPGA_IOC_STATS`.
pub const STATS: u64 = ioc(IOC_READ | IOC_WRITE, 6, size_of::<IocStats>());
/// `VFPGA_IOC_NOP`.
pub const NOP: u64 = ioc(IOC_READ | IOC_WRITE, 7, size_of::<IocNop>());
/// `VFPGA_IOC_LIMITS`.
pub const LIMITS: u64 = ioc(IOC_READ, 8, size_of::<IocLimits>());
/// `VFPGA_IOC_REGISTER`.
pub const REGISTER: u64 = ioc(IOC_READ | IOC_WRITE, 9, size_of::<IocRegister>());
/// `VFPGA_IOC_UNREGISTER` (its argument is a `u32` id).
pub const UNREGISTER: u64 = ioc(IOC_WRITE, 10, size_of::<u32>());

/// Issues ioctl `request` on `fd` with `arg`, retrying on `EINTR` from a non-fatal
/// signal (the driver only returns `EINTR` before submitting or for fatal signals).
pub fn call<T>(fd: RawFd, request: u64, arg: &mut T) -> io::Result<()> {
    loop {
        // SAFETY: `arg` is a valid, exclusively borrowed structure of the size encoded
        // in `request` (the constants above derive the size from the type), for the
        // whole call; the kernel reads and writes only that structure and the buffers
        // it names, which the caller keeps alive.
        let rc = unsafe { libc::ioctl(fd, request as libc::c_ulong, std::ptr::from_mut(arg)) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
