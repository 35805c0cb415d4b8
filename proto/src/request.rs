//! Building and checking requests: header and argument-table validation and the byte
//! layout of a chain.

use crate::{
    ArgEntry, ArgKind, ElemType, Opcode, RequestHeader, Response, Status, ABI_VERSION, MAX_ARGS,
    REQUEST_MAGIC,
};

/// Why a request was refused: the status and detail to put in the response, and a reason
/// for logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status:?} (detail {detail}): {reason}")]
pub struct AbiError {
    /// Status for the response.
    pub status: Status,
    /// Detail for the response.
    pub detail: u32,
    /// Reason, for logs.
    pub reason: &'static str,
}

impl AbiError {
    /// An error with detail 0.
    pub const fn new(status: Status, reason: &'static str) -> Self {
        Self {
            status,
            detail: 0,
            reason,
        }
    }

    /// An error about argument `index`.
    pub fn arg(status: Status, index: usize, reason: &'static str) -> Self {
        Self {
            status,
            detail: u32::try_from(index).unwrap_or(u32::MAX),
            reason,
        }
    }
}

impl RequestHeader {
    /// A header for `opcode` with `n_args` argument entries.
    pub fn new(opcode: Opcode, tag: u64, session: u64, n_args: usize) -> Self {
        Self {
            magic: REQUEST_MAGIC,
            version: ABI_VERSION,
            opcode: opcode.raw(),
            flags: 0,
            n_args: u32::try_from(n_args).unwrap_or(u32::MAX),
            tag,
            session,
            reserved: [0; 2],
        }
    }

    /// Checks magic, version, opcode, flags, reserved fields and the argument count
    /// against `max_args`; returns the opcode.
    pub fn check(&self, max_args: usize) -> Result<Opcode, AbiError> {
        if self.magic != REQUEST_MAGIC {
            return Err(AbiError::new(Status::BadRequest, "bad request magic"));
        }
        if self.version != ABI_VERSION {
            return Err(AbiError::new(Status::BadVersion, "unsupported ABI version"));
        }
        let Some(op) = Opcode::from_raw(self.opcode) else {
            return Err(AbiError::new(Status::Unsupported, "unknown opcode"));
        };
        if self.flags != 0 || self.reserved != [0; 2] {
            return Err(AbiError::new(
                Status::BadRequest,
                "non-zero flags or reserved field",
            ));
        }
        if self.n_args as usize > max_args.min(MAX_ARGS) {
            return Err(AbiError::new(Status::TooLarge, "too many arguments"));
        }
        Ok(op)
    }
}

impl ArgEntry {
    /// A scalar argument carrying `bits` (zero-extended).
    pub fn scalar(ty: ElemType, bits: u64) -> Self {
        Self::with(ArgKind::Scalar, ty, bits)
    }

    /// A device-readable buffer of `len` bytes.
    pub fn input(ty: ElemType, len: u64) -> Self {
        Self::with(ArgKind::In, ty, len)
    }

    /// A device-writable buffer of `len` bytes.
    pub fn output(ty: ElemType, len: u64) -> Self {
        Self::with(ArgKind::Out, ty, len)
    }

    fn with(kind: ArgKind, ty: ElemType, value: u64) -> Self {
        Self {
            kind: kind.raw(),
            ty: ty.raw(),
            flags: 0,
            reserved: 0,
            value,
        }
    }

    /// Checks the entry at position `index` on its own. Unknown kinds or types and
    /// non-zero flags or reserved fields are framing errors (`BAD_REQUEST`); a scalar
    /// with bits above its type's width or a buffer that is not a whole number of
    /// elements is a bad argument (`BAD_ARGUMENT`). Either way `detail` is `index`.
    pub fn check(&self, index: usize) -> Result<(ArgKind, ElemType), AbiError> {
        let framing = |reason| AbiError::arg(Status::BadRequest, index, reason);
        let value = |reason| AbiError::arg(Status::BadArgument, index, reason);
        let kind = ArgKind::from_raw(self.kind).ok_or(framing("unknown argument kind"))?;
        let ty = ElemType::from_raw(self.ty).ok_or(framing("unknown element type"))?;
        if self.flags != 0 || self.reserved != 0 {
            return Err(framing("non-zero argument flags or reserved field"));
        }
        match kind {
            ArgKind::Scalar if !ty.scalar_fits(self.value) => {
                Err(value("scalar has bits above its type's width"))
            }
            ArgKind::In | ArgKind::Out if self.value % ty.size() as u64 != 0 => {
                Err(value("buffer length is not a whole number of elements"))
            }
            _ => Ok((kind, ty)),
        }
    }
}

impl Response {
    /// A response with `status` for the request tagged `tag`.
    pub fn new(status: Status, tag: u64) -> Self {
        Self {
            status: status.raw(),
            tag,
            ..Self::default()
        }
    }

    /// A response carrying `err`.
    pub fn error(err: &AbiError, tag: u64) -> Self {
        Self {
            detail: err.detail,
            ..Self::new(err.status, tag)
        }
    }

    /// The decoded status (`None` for a value this ABI version does not define).
    pub fn status(&self) -> Option<Status> {
        Status::from_raw(self.status)
    }
}

/// Byte counts of a request chain, derived from its argument table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainLayout {
    /// Bytes of input buffers.
    pub in_bytes: u64,
    /// Bytes of output buffers.
    pub out_bytes: u64,
    /// Header and argument table bytes.
    pub head_bytes: u64,
}

impl ChainLayout {
    /// Computes the layout of a chain with this argument table. Fails on an entry that
    /// does not pass [`ArgEntry::check`] or on lengths whose sum overflows.
    pub fn of(args: &[ArgEntry]) -> Result<Self, AbiError> {
        let mut layout = Self {
            in_bytes: 0,
            out_bytes: 0,
            head_bytes: (RequestHeader::SIZE + args.len() * ArgEntry::SIZE) as u64,
        };
        for (i, a) in args.iter().enumerate() {
            let total = match a.check(i)?.0 {
                ArgKind::Scalar => continue,
                ArgKind::In => &mut layout.in_bytes,
                ArgKind::Out => &mut layout.out_bytes,
            };
            *total = total.checked_add(a.value).ok_or(AbiError::arg(
                Status::TooLarge,
                i,
                "buffer lengths overflow",
            ))?;
        }
        Ok(layout)
    }

    /// Device-readable bytes the chain must have.
    pub fn readable(&self) -> u64 {
        self.head_bytes.saturating_add(self.in_bytes)
    }

    /// Device-writable bytes the chain must have.
    pub fn writable(&self) -> u64 {
        self.out_bytes.saturating_add(Response::SIZE as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks_each_field() {
        let ok = RequestHeader::new(Opcode::Run, 7, 9, 2);
        assert_eq!(ok.check(MAX_ARGS), Ok(Opcode::Run));
        let with = |f: fn(&mut RequestHeader)| {
            let mut h = ok;
            f(&mut h);
            h.check(MAX_ARGS).map_err(|e| e.status)
        };
        assert_eq!(with(|h| h.magic ^= 1), Err(Status::BadRequest));
        assert_eq!(with(|h| h.version = 2), Err(Status::BadVersion));
        assert_eq!(with(|h| h.opcode = 99), Err(Status::Unsupported));
        assert_eq!(with(|h| h.flags = 1), Err(Status::BadRequest));
        assert_eq!(with(|h| h.reserved[1] = 1), Err(Status::BadRequest));
        assert_eq!(with(|h| h.n_args = 9), Err(Status::TooLarge));
    }

    #[test]
    fn arg_entries_are_checked() {
        assert!(ArgEntry::scalar(ElemType::U32, 5).check(0).is_ok());
        let wide = ArgEntry::scalar(ElemType::U32, 1 << 32)
            .check(2)
            .unwrap_err();
        assert_eq!((wide.status, wide.detail), (Status::BadArgument, 2));
        assert!(ArgEntry::scalar(ElemType::U64, u64::MAX).check(0).is_ok());
        assert!(ArgEntry::input(ElemType::U32, 6).check(0).is_err());
        let mut bad = ArgEntry::input(ElemType::U8, 6);
        bad.kind = 9;
        assert_eq!(bad.check(3).map_err(|e| e.detail), Err(3));
    }

    #[test]
    fn layout_sums_and_refuses_overflow() {
        let args = [
            ArgEntry::input(ElemType::U32, 16),
            ArgEntry::output(ElemType::U32, 8),
            ArgEntry::scalar(ElemType::U32, 4),
        ];
        let l = ChainLayout::of(&args).unwrap();
        assert_eq!(l.readable(), 48 + 3 * 16 + 16);
        assert_eq!(l.writable(), 8 + 40);
        let huge = [
            ArgEntry::input(ElemType::U8, u64::MAX),
            ArgEntry::input(ElemType::U8, 1),
        ];
        assert_eq!(
            ChainLayout::of(&huge).map_err(|e| e.status),
            Err(Status::TooLarge)
        );
    }

    #[test]
    fn encoding_is_little_endian_at_field_offsets() {
        let h = RequestHeader::new(Opcode::Run, 0x1122_3344_5566_7788, 0xAABB, 3);
        let b = h.to_bytes();
        assert_eq!(&b[0..4], b"VFRQ");
        assert_eq!(&b[4..6], &[1, 0]);
        assert_eq!(&b[6..8], &[5, 0]);
        assert_eq!(&b[12..16], &[3, 0, 0, 0]);
        assert_eq!(&b[16..24], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(RequestHeader::from_bytes(&b), h);
    }
}
