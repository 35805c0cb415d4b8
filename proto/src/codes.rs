//! Opcodes, status codes, argument kinds and element types of the device ABI.

macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $cname:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr($repr)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value, )*
        }

        impl $name {
            /// Every value with the name of its `#define` in `vfpga_abi.h`.
            pub const ALL: &'static [($name, &'static str)] = &[ $( ($name::$variant, $cname), )* ];

            /// Decodes a wire value; `None` for values this ABI version does not define.
            pub fn from_raw(v: $repr) -> Option<Self> {
                match v {
                    $( $value => Some($name::$variant), )*
                    _ => None,
                }
            }

            /// The wire value.
            pub fn raw(self) -> $repr {
                self as $repr
            }
        }
    };
}

code_enum! {
    /// Operation requested in [`crate::RequestHeader::opcode`].
    pub enum Opcode: u16 {
        /// Device information ([`crate::DeviceInfo`] into one output buffer).
        GetInfo = 1 => "VFPGA_OP_GET_INFO",
        /// Kernel catalogue ([`crate::KernelDesc`] records into one output buffer).
        ListKernels = 2 => "VFPGA_OP_LIST_KERNELS",
        /// Open a session on a kernel named by one input buffer; `value` = session id.
        OpenSession = 3 => "VFPGA_OP_OPEN_SESSION",
        /// Close the session in the header.
        CloseSession = 4 => "VFPGA_OP_CLOSE_SESSION",
        /// Run the session's kernel with the argument table.
        Run = 5 => "VFPGA_OP_RUN",
        /// Load a bitstream named by one input buffer from the device's library.
        LoadBitstream = 6 => "VFPGA_OP_LOAD_BITSTREAM",
        /// Statistics ([`crate::Stats`] into one output buffer).
        GetStats = 7 => "VFPGA_OP_GET_STATS",
        /// Do nothing and answer OK (round-trip measurement).
        Nop = 8 => "VFPGA_OP_NOP",
        /// Store a bitstream and its manifest in a board agent's library (stream
        /// transport only; virtio devices answer `UNSUPPORTED`).
        UploadBitstream = 9 => "VFPGA_OP_UPLOAD_BITSTREAM",
        /// What this guest may do and how much (`vfpga_limits`).
        GetLimits = 10 => "VFPGA_OP_GET_LIMITS",
    }
}

code_enum! {
    /// Outcome in [`crate::Response::status`].
    pub enum Status: u16 {
        /// Success.
        Ok = 0 => "VFPGA_S_OK",
        /// Malformed request: framing, lengths, flags, reserved fields.
        BadRequest = 1 => "VFPGA_S_BAD_REQUEST",
        /// ABI version in the header is not supported.
        BadVersion = 2 => "VFPGA_S_BAD_VERSION",
        /// Unknown opcode or an operation this device does not offer.
        Unsupported = 3 => "VFPGA_S_UNSUPPORTED",
        /// No kernel (or bitstream) with that name.
        UnknownKernel = 4 => "VFPGA_S_UNKNOWN_KERNEL",
        /// Session id unknown to this device (closed, never opened, or another guest's).
        BadSession = 5 => "VFPGA_S_BAD_SESSION",
        /// Arguments do not match the kernel's signature; `detail` = argument index.
        BadArgument = 6 => "VFPGA_S_BAD_ARGUMENT",
        /// Refused by policy (e.g. a bitstream not in the allowlist).
        Permission = 7 => "VFPGA_S_PERMISSION",
        /// Out of sessions or execution slots; retry later.
        Busy = 8 => "VFPGA_S_BUSY",
        /// Request exceeds a limit from the config space.
        TooLarge = 9 => "VFPGA_S_TOO_LARGE",
        /// The engine or its I/O failed.
        EngineError = 10 => "VFPGA_S_ENGINE_ERROR",
        /// The engine did not finish in time.
        Timeout = 11 => "VFPGA_S_TIMEOUT",
        /// The link to a remote board is down.
        LinkDown = 12 => "VFPGA_S_LINK_DOWN",
    }
}

impl Status {
    /// Short human-readable meaning, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Status::Ok => "success",
            Status::BadRequest => "malformed request",
            Status::BadVersion => "unsupported ABI version",
            Status::Unsupported => "operation not supported by this device",
            Status::UnknownKernel => "no such kernel",
            Status::BadSession => "unknown or closed session",
            Status::BadArgument => "arguments do not match the kernel signature",
            Status::Permission => "not permitted by device policy",
            Status::Busy => "device busy, retry later",
            Status::TooLarge => "request exceeds a device limit",
            Status::EngineError => "accelerator engine failure",
            Status::Timeout => "kernel timed out",
            Status::LinkDown => "link to the remote board is down",
        }
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.describe())
    }
}

code_enum! {
    /// Role of an argument, in [`crate::ArgEntry::kind`] and [`crate::ArgDesc::kind`].
    pub enum ArgKind: u8 {
        /// A scalar carried in the entry's `value`.
        Scalar = 1 => "VFPGA_ARG_SCALAR",
        /// A device-readable buffer of `value` bytes.
        In = 2 => "VFPGA_ARG_IN",
        /// A device-writable buffer of `value` bytes.
        Out = 3 => "VFPGA_ARG_OUT",
    }
}

code_enum! {
    /// Element type of a scalar or a buffer.
    pub enum ElemType: u8 {
        /// Unsigned 8-bit.
        U8 = 1 => "VFPGA_T_U8",
        /// Signed 16-bit.
        I16 = 2 => "VFPGA_T_I16",
        /// Signed 32-bit.
        I32 = 3 => "VFPGA_T_I32",
        /// Unsigned 32-bit.
        U32 = 4 => "VFPGA_T_U32",
        /// IEEE-754 binary32.
        F32 = 5 => "VFPGA_T_F32",
        /// Unsigned 64-bit.
        U64 = 6 => "VFPGA_T_U64",
        /// Signed 64-bit.
        I64 = 7 => "VFPGA_T_I64",
        /// IEEE-754 binary64.
        F64 = 8 => "VFPGA_T_F64",
    }
}

impl ElemType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            ElemType::U8 => 1,
            ElemType::I16 => 2,
            ElemType::I32 | ElemType::U32 | ElemType::F32 => 4,
            ElemType::U64 | ElemType::I64 | ElemType::F64 => 8,
        }
    }

    /// Lower-case name used in manifests and by the CLI.
    pub fn name(self) -> &'static str {
        match self {
            ElemType::U8 => "u8",
            ElemType::I16 => "i16",
            ElemType::I32 => "i32",
            ElemType::U32 => "u32",
            ElemType::F32 => "f32",
            ElemType::U64 => "u64",
            ElemType::I64 => "i64",
            ElemType::F64 => "f64",
        }
    }

    /// Parses a name produced by [`ElemType::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().map(|&(t, _)| t).find(|t| t.name() == s)
    }

    /// True if a scalar of this type may carry `bits` in a 64-bit value field: types
    /// narrower than 64 bits must leave the upper bits zero.
    pub fn scalar_fits(self, bits: u64) -> bool {
        self.size() >= 8 || bits >> (self.size() * 8) == 0
    }
}

impl ArgKind {
    /// Lower-case name used in manifests and by the CLI.
    pub fn name(self) -> &'static str {
        match self {
            ArgKind::Scalar => "scalar",
            ArgKind::In => "in",
            ArgKind::Out => "out",
        }
    }

    /// Parses a name produced by [`ArgKind::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().map(|&(k, _)| k).find(|k| k.name() == s)
    }
}
