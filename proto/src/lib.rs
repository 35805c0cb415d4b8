//! The vfpga device ABI, shared by the daemon, the guest library, the board agent and
//! (through `include/vfpga_abi.h`) the guest kernel module.
//!
//! A request is one virtio descriptor chain:
//!
//! ```text
//! device-readable:  RequestHeader | ArgEntry × n_args | input buffers, in argument order
//! device-writable:  output buffers, in argument order | Response
//! ```
//!
//! All integers are little-endian, all structures have fixed sizes and carry no
//! pointers. `docs/protocol.md` is the full specification.

mod abi;
mod codes;
mod request;
mod signature;
pub mod stream;
pub mod wire;

pub use abi::{
    ArgDesc, ArgEntry, DeviceConfig, DeviceInfo, KernelDesc, Limits, RequestHeader, Response, Stats,
};
pub use codes::{ArgKind, ElemType, Opcode, Status};
pub use request::{AbiError, ChainLayout};
pub use signature::{ArgSig, KernelSig, SigError};

/// ABI version spoken by this crate (`RequestHeader::version`, `DeviceConfig::abi_version`).
pub const ABI_VERSION: u16 = 1;

/// `RequestHeader::magic`: the bytes "VFRQ".
pub const REQUEST_MAGIC: u32 = u32::from_le_bytes(*b"VFRQ");

/// `DeviceConfig::magic`: the bytes "VFPG".
pub const CONFIG_MAGIC: u32 = u32::from_le_bytes(*b"VFPG");

/// Default virtio device ID: 21, assigned by the virtio specification to a device no
/// Linux driver binds, and accepted by QEMU's `vhost-user-test-device-pci`.
pub const DEFAULT_VIRTIO_ID: u16 = 21;

/// Virtqueue index of the control queue; request queues follow it.
pub const CONTROL_QUEUE: u16 = 0;

/// Most entries in an argument table and in a kernel signature.
pub const MAX_ARGS: usize = 8;

/// `ArgDesc::dims` entry meaning "no dimension".
pub const DIM_NONE: u8 = 0xff;

/// Longest kernel or bitstream name in bytes (the fields hold a terminating NUL).
pub const MAX_NAME_LEN: usize = 31;

/// Device feature bit: `LOAD_BITSTREAM` is offered.
pub const VIRTIO_VFPGA_F_LOAD_BITSTREAM: u32 = 0;

/// Capability: completions may arrive out of submission order.
pub const CAP_OUT_OF_ORDER: u64 = 1 << 0;
/// Capability: `GET_LIMITS` answers (the device enforces a per-guest policy).
pub const CAP_LIMITS: u64 = 1 << 1;
/// `vfpga_limits.flags`: the guest may load bitstreams (some or all of the library's).
pub const LIMIT_F_LOAD: u32 = 1 << 0;
/// `vfpga_limits.flags`: the guest may run every kernel of the catalogue.
pub const LIMIT_F_ALL_KERNELS: u32 = 1 << 1;
/// Capability: the engine is the software model.
pub const CAP_ENGINE_SIM: u64 = 1 << 8;
/// Capability: the engine is local programmable logic.
pub const CAP_ENGINE_PL: u64 = 1 << 9;
/// Capability: the engine forwards to remote boards.
pub const CAP_ENGINE_REMOTE: u64 = 1 << 10;

/// Named constants with their `#define` names in `vfpga_abi.h`, for the layout test.
pub const C_CONSTANTS: &[(&str, u64)] = &[
    ("VFPGA_ABI_VERSION", ABI_VERSION as u64),
    ("VFPGA_REQUEST_MAGIC", REQUEST_MAGIC as u64),
    ("VFPGA_CONFIG_MAGIC", CONFIG_MAGIC as u64),
    ("VFPGA_DEFAULT_VIRTIO_ID", DEFAULT_VIRTIO_ID as u64),
    ("VFPGA_CONTROL_QUEUE", CONTROL_QUEUE as u64),
    ("VFPGA_MAX_ARGS", MAX_ARGS as u64),
    ("VFPGA_DIM_NONE", DIM_NONE as u64),
    ("VFPGA_MAX_NAME_LEN", MAX_NAME_LEN as u64),
    (
        "VIRTIO_VFPGA_F_LOAD_BITSTREAM",
        VIRTIO_VFPGA_F_LOAD_BITSTREAM as u64,
    ),
    ("VFPGA_CAP_OUT_OF_ORDER", CAP_OUT_OF_ORDER),
    ("VFPGA_CAP_LIMITS", CAP_LIMITS),
    ("VFPGA_LIMIT_F_LOAD", LIMIT_F_LOAD as u64),
    ("VFPGA_LIMIT_F_ALL_KERNELS", LIMIT_F_ALL_KERNELS as u64),
    ("VFPGA_CAP_ENGINE_SIM", CAP_ENGINE_SIM),
    ("VFPGA_CAP_ENGINE_PL", CAP_ENGINE_PL),
    ("VFPGA_CAP_ENGINE_REMOTE", CAP_ENGINE_REMOTE),
];
