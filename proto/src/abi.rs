//! The fixed-size structures of the device ABI. `docs/protocol.md` is their specification;
//! `include/vfpga_abi.h` is their C twin.

use crate::wire::wire_struct;
use crate::MAX_ARGS;

wire_struct! {
    /// Device-specific virtio configuration space (read-only for the driver).
    pub struct DeviceConfig as "vfpga_config" {
        /// [`crate::CONFIG_MAGIC`].
        pub magic: u32,
        /// [`crate::ABI_VERSION`] the device speaks.
        pub abi_version: u16,
        /// Request queues after the control queue (virtqueue 0).
        pub num_request_queues: u16,
        /// Most descriptors one request chain may use (after indirect expansion).
        pub max_segments: u32,
        /// Most entries in one argument table.
        pub max_args: u32,
        /// Most bytes (readable + writable) one request chain may describe.
        pub max_request_bytes: u64,
        /// `VFPGA_CAP_*` bits.
        pub capabilities: u64,
        /// Most sessions open at once on this device.
        pub max_sessions: u32,
        /// Zero.
        pub reserved: u32,
    }
}

wire_struct! {
    /// First bytes of every request chain (device-readable).
    pub struct RequestHeader as "vfpga_req_hdr" {
        /// [`crate::REQUEST_MAGIC`].
        pub magic: u32,
        /// [`crate::ABI_VERSION`].
        pub version: u16,
        /// [`crate::Opcode`].
        pub opcode: u16,
        /// Zero (no flags defined in this version).
        pub flags: u32,
        /// Entries in the argument table that follows.
        pub n_args: u32,
        /// Driver's request tag, echoed in the response.
        pub tag: u64,
        /// Session id for `RUN`, `CLOSE_SESSION` and per-session `GET_STATS`; else zero.
        pub session: u64,
        /// Zero.
        pub reserved: [u64; 2],
    }
}

wire_struct! {
    /// One entry of the argument table (device-readable, after the header).
    pub struct ArgEntry as "vfpga_arg" {
        /// [`crate::ArgKind`].
        pub kind: u8,
        /// [`crate::ElemType`].
        pub ty: u8,
        /// Zero.
        pub flags: u16,
        /// Zero.
        pub reserved: u32,
        /// Scalar: its bits, zero-extended. Buffer: its length in bytes.
        pub value: u64,
    }
}

wire_struct! {
    /// Last bytes of every request chain (device-writable).
    pub struct Response as "vfpga_resp" {
        /// [`crate::Status`].
        pub status: u16,
        /// Zero.
        pub reserved: u16,
        /// Status detail: for `BAD_ARGUMENT` the argument index, otherwise an
        /// operation-specific code (see the protocol document).
        pub detail: u32,
        /// The request's tag.
        pub tag: u64,
        /// Operation result: session id, kernel count, ...
        pub value: u64,
        /// Bytes written into the output buffers (the response itself excluded).
        pub written: u64,
        /// Time the engine spent on the request, in nanoseconds.
        pub duration_ns: u64,
    }
}

wire_struct! {
    /// Answer of `GET_INFO`.
    pub struct DeviceInfo as "vfpga_info" {
        /// ABI version.
        pub abi_version: u16,
        /// Request queues.
        pub num_request_queues: u16,
        /// Kernels in the catalogue.
        pub num_kernels: u32,
        /// `VFPGA_CAP_*` bits.
        pub capabilities: u64,
        /// Device feature bits offered (`VIRTIO_VFPGA_F_*`).
        pub features: u64,
        /// Most sessions at once.
        pub max_sessions: u32,
        /// Sessions open now.
        pub open_sessions: u32,
        /// Engine name, NUL-padded.
        pub engine: [u8; 32],
        /// Daemon version, NUL-padded.
        pub daemon_version: [u8; 32],
        /// Name of this device (the guest it serves), NUL-padded.
        pub device_name: [u8; 32],
        /// Loaded bitstream (or built-in catalogue) name, NUL-padded.
        pub bitstream: [u8; 32],
    }
}

wire_struct! {
    /// One argument of a kernel signature, inside [`KernelDesc`].
    pub struct ArgDesc as "vfpga_arg_desc" {
        /// Argument name, NUL-padded.
        pub name: [u8; 10],
        /// [`crate::ArgKind`].
        pub kind: u8,
        /// [`crate::ElemType`].
        pub ty: u8,
        /// For buffers: indices of the scalar arguments whose values multiply the
        /// element count; [`crate::DIM_NONE`] when unused.
        pub dims: [u8; 2],
        /// For buffers: constant factor of the element count. Zero for scalars.
        pub count: u16,
    }
}

wire_struct! {
    /// One record of the `LIST_KERNELS` answer.
    pub struct KernelDesc as "vfpga_kernel_desc" {
        /// Kernel name, NUL-padded.
        pub name: [u8; 32],
        /// One-line description, NUL-padded.
        pub doc: [u8; 64],
        /// Used entries of `args`.
        pub n_args: u8,
        /// Zero.
        pub flags: u8,
        /// Zero.
        pub reserved0: u16,
        /// Zero.
        pub reserved1: u32,
        /// The signature, in argument-table order.
        pub args: [ArgDesc; MAX_ARGS],
    }
}

wire_struct! {
    /// Answer of `GET_STATS` (device-wide, or one session's when the header names one).
    pub struct Stats as "vfpga_stats" {
        /// Requests completed.
        pub requests: u64,
        /// Requests completed with a status other than OK.
        pub errors: u64,
        /// Successful kernel runs.
        pub runs: u64,
        /// Input buffer bytes consumed by runs.
        pub bytes_in: u64,
        /// Output buffer bytes produced by runs.
        pub bytes_out: u64,
        /// Engine time, nanoseconds.
        pub engine_ns: u64,
        /// Requests refused with `BUSY`.
        pub busy: u64,
        /// Sessions open now (device-wide) or 1 (session).
        pub open_sessions: u32,
        /// Zero.
        pub reserved: u32,
    }
}

wire_struct! {
    /// Answer of `GET_LIMITS`: the policy this guest runs under, and what it uses now.
    /// A limit of 0 in the rate fields means none.
    pub struct Limits as "vfpga_limits" {
        /// Most sessions open at once (per device, or per stream).
        pub max_sessions: u32,
        /// Most runs in flight at once, over all of the guest's devices and streams.
        pub max_inflight: u32,
        /// Most bytes (inputs plus outputs) of runs in flight at once.
        pub max_inflight_bytes: u64,
        /// Most bytes of one request.
        pub max_request_bytes: u64,
        /// Runs per second (0: no limit).
        pub rate_runs: u64,
        /// Bytes of runs per second (0: no limit).
        pub rate_bytes: u64,
        /// The guest's share of engine time against other guests' while several wait.
        pub weight: u32,
        /// `VFPGA_LIMIT_F_*` bits.
        pub flags: u32,
        /// Runs in flight now.
        pub inflight: u32,
        /// Zero.
        pub reserved: u32,
        /// Bytes of runs in flight now.
        pub inflight_bytes: u64,
    }
}
