//! Kernel signatures: what `LIST_KERNELS` publishes and what `RUN` is checked against.
//!
//! A buffer's element count is `count × scalar[dims[0]] × scalar[dims[1]]` (absent dims
//! count as 1), so both sides can size and check buffers from the signature alone.

use std::fmt::Write as _;

use crate::wire::{name_field, name_str};
use crate::{
    AbiError, ArgDesc, ArgEntry, ArgKind, ElemType, KernelDesc, Status, DIM_NONE, MAX_ARGS,
};

/// One argument of a kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgSig {
    /// Name (at most 9 bytes).
    pub name: String,
    /// Scalar, input buffer or output buffer.
    pub kind: ArgKind,
    /// Element type.
    pub ty: ElemType,
    /// Buffers: indices of the scalar arguments that multiply the element count.
    pub dims: [Option<u8>; 2],
    /// Buffers: constant factor of the element count (at least 1). Scalars: 0.
    pub count: u16,
}

/// A kernel's name, description and arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSig {
    /// Name (at most [`crate::MAX_NAME_LEN`] bytes).
    pub name: String,
    /// One-line description (at most 63 bytes).
    pub doc: String,
    /// Arguments in argument-table order.
    pub args: Vec<ArgSig>,
}

/// A signature that cannot be represented in the ABI.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigError {
    /// A name or description does not fit its field, or is not valid text.
    #[error("kernel `{kernel}`: {what} `{value}` is empty, too long or contains NUL")]
    BadName {
        /// Kernel name.
        kernel: String,
        /// Which field.
        what: &'static str,
        /// Its value.
        value: String,
    },
    /// More than [`MAX_ARGS`] arguments.
    #[error("kernel `{0}` has more than {MAX_ARGS} arguments")]
    TooManyArgs(String),
    /// A dimension that does not name an unsigned integer scalar argument.
    #[error(
        "kernel `{kernel}`: argument `{arg}` has a dimension that is not a u32/u64 scalar argument"
    )]
    BadDim {
        /// Kernel name.
        kernel: String,
        /// Argument name.
        arg: String,
    },
    /// A scalar with dimensions or a count, or a buffer with a zero count.
    #[error("kernel `{kernel}`: argument `{arg}` has an inconsistent count")]
    BadCount {
        /// Kernel name.
        kernel: String,
        /// Argument name.
        arg: String,
    },
    /// An undefined kind or type code in a descriptor.
    #[error("kernel descriptor has an undefined kind or type code")]
    BadCode,
}

impl KernelSig {
    /// Checks that the signature fits the ABI: names, argument count, dimensions.
    pub fn validate(&self) -> Result<(), SigError> {
        let bad_name = |what, value: &str| SigError::BadName {
            kernel: self.name.clone(),
            what,
            value: value.to_owned(),
        };
        if self.name.is_empty() || name_field::<32>(&self.name).is_none() {
            return Err(bad_name("name", &self.name));
        }
        if name_field::<64>(&self.doc).is_none() {
            return Err(bad_name("description", &self.doc));
        }
        if self.args.len() > MAX_ARGS {
            return Err(SigError::TooManyArgs(self.name.clone()));
        }
        for a in &self.args {
            if a.name.is_empty() || name_field::<10>(&a.name).is_none() {
                return Err(bad_name("argument name", &a.name));
            }
            let bad_count = || SigError::BadCount {
                kernel: self.name.clone(),
                arg: a.name.clone(),
            };
            match a.kind {
                ArgKind::Scalar if a.count != 0 || a.dims != [None, None] => {
                    return Err(bad_count())
                }
                ArgKind::In | ArgKind::Out if a.count == 0 => return Err(bad_count()),
                _ => {}
            }
            for d in a.dims.iter().flatten() {
                let ok = self.args.get(usize::from(*d)).is_some_and(|s| {
                    s.kind == ArgKind::Scalar && matches!(s.ty, ElemType::U32 | ElemType::U64)
                });
                if !ok {
                    return Err(SigError::BadDim {
                        kernel: self.name.clone(),
                        arg: a.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The `LIST_KERNELS` record. Fields that do not fit are truncated, so call
    /// [`KernelSig::validate`] first.
    pub fn to_desc(&self) -> KernelDesc {
        let mut d = KernelDesc {
            name: truncated(&self.name),
            doc: truncated(&self.doc),
            n_args: u8::try_from(self.args.len().min(MAX_ARGS)).unwrap_or(0),
            ..KernelDesc::default()
        };
        for (slot, a) in d.args.iter_mut().zip(&self.args) {
            *slot = ArgDesc {
                name: truncated(&a.name),
                kind: a.kind.raw(),
                ty: a.ty.raw(),
                dims: a.dims.map(|d| d.unwrap_or(DIM_NONE)),
                count: a.count,
            };
        }
        d
    }

    /// Parses and validates a `LIST_KERNELS` record.
    pub fn from_desc(d: &KernelDesc) -> Result<Self, SigError> {
        let text = |f: &[u8], what| {
            name_str(f)
                .map(str::to_owned)
                .ok_or_else(|| SigError::BadName {
                    kernel: String::from_utf8_lossy(&d.name).into_owned(),
                    what,
                    value: String::from_utf8_lossy(f).into_owned(),
                })
        };
        let n = usize::from(d.n_args);
        if n > MAX_ARGS {
            return Err(SigError::TooManyArgs(text(&d.name, "name")?));
        }
        let mut args = Vec::with_capacity(n);
        for a in &d.args[..n] {
            args.push(ArgSig {
                name: text(&a.name, "argument name")?,
                kind: ArgKind::from_raw(a.kind).ok_or(SigError::BadCode)?,
                ty: ElemType::from_raw(a.ty).ok_or(SigError::BadCode)?,
                dims: a.dims.map(|x| (x != DIM_NONE).then_some(x)),
                count: a.count,
            });
        }
        let sig = Self {
            name: text(&d.name, "name")?,
            doc: text(&d.doc, "description")?,
            args,
        };
        sig.validate()?;
        Ok(sig)
    }

    /// Index of the argument called `name`.
    pub fn arg_index(&self, name: &str) -> Option<usize> {
        self.args.iter().position(|a| a.name == name)
    }

    /// Byte length buffer argument `index` must have, given the scalar values indexed
    /// by argument position. `None` on overflow or if `index` is not a buffer.
    pub fn buffer_bytes(&self, index: usize, scalars: &[u64]) -> Option<u64> {
        let a = self.args.get(index)?;
        if a.kind == ArgKind::Scalar {
            return None;
        }
        let mut n = u64::from(a.count);
        for d in a.dims.iter().flatten() {
            n = n.checked_mul(*scalars.get(usize::from(*d))?)?;
        }
        n.checked_mul(a.ty.size() as u64)
    }

    /// Checks a `RUN` argument table against the signature: same count, kinds and
    /// types; scalars that fit their type; buffers of exactly the length the scalars
    /// imply. Errors name the offending argument in `detail`.
    pub fn check_call(&self, args: &[ArgEntry]) -> Result<(), AbiError> {
        if args.len() != self.args.len() {
            return Err(AbiError::arg(
                Status::BadArgument,
                args.len().min(self.args.len()),
                "argument count differs from the kernel signature",
            ));
        }
        let mut scalars = [0u64; MAX_ARGS];
        for (i, (e, s)) in args.iter().zip(&self.args).enumerate() {
            let (kind, ty) = e.check(i)?;
            if kind != s.kind || ty != s.ty {
                return Err(AbiError::arg(
                    Status::BadArgument,
                    i,
                    "argument kind or type differs from the kernel signature",
                ));
            }
            scalars[i] = e.value;
        }
        for (i, e) in args.iter().enumerate() {
            if self.args[i].kind == ArgKind::Scalar {
                continue;
            }
            let want = self.buffer_bytes(i, &scalars).ok_or(AbiError::arg(
                Status::BadArgument,
                i,
                "buffer size implied by the scalars overflows",
            ))?;
            if e.value != want {
                return Err(AbiError::arg(
                    Status::BadArgument,
                    i,
                    "buffer length differs from the size its dimensions imply",
                ));
            }
        }
        Ok(())
    }

    /// Human-readable form, e.g. `vadd_u32(in a: u32[n], in b: u32[n], out c: u32[n], n: u32)`.
    pub fn render(&self) -> String {
        let mut s = format!("{}(", self.name);
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            if a.kind == ArgKind::Scalar {
                let _ = write!(s, "{}: {}", a.name, a.ty.name());
                continue;
            }
            let _ = write!(s, "{} {}: {}[", a.kind.name(), a.name, a.ty.name());
            let mut factors: Vec<String> = Vec::new();
            if a.count != 1 || a.dims == [None, None] {
                factors.push(a.count.to_string());
            }
            for d in a.dims.iter().flatten() {
                let dim = self
                    .args
                    .get(usize::from(*d))
                    .map_or("?", |x| x.name.as_str());
                factors.push(dim.to_owned());
            }
            let _ = write!(s, "{}]", factors.join("*"));
        }
        s.push(')');
        s
    }
}

/// A NUL-padded field holding as much of `s` as fits (callers validate first).
fn truncated<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let n = s.len().min(N - 1);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mmult() -> KernelSig {
        let buf = |name: &str, kind, dims: [Option<u8>; 2]| ArgSig {
            name: name.into(),
            kind,
            ty: ElemType::F32,
            dims,
            count: 1,
        };
        let dim = |name: &str| ArgSig {
            name: name.into(),
            kind: ArgKind::Scalar,
            ty: ElemType::U32,
            dims: [None, None],
            count: 0,
        };
        KernelSig {
            name: "mmult_f32".into(),
            doc: "C = A * B".into(),
            args: vec![
                buf("a", ArgKind::In, [Some(3), Some(4)]),
                buf("b", ArgKind::In, [Some(4), Some(5)]),
                buf("c", ArgKind::Out, [Some(3), Some(5)]),
                dim("m"),
                dim("k"),
                dim("n"),
            ],
        }
    }

    #[test]
    fn descriptor_round_trip() {
        let s = mmult();
        s.validate().unwrap();
        assert_eq!(KernelSig::from_desc(&s.to_desc()).unwrap(), s);
        assert_eq!(
            s.render(),
            "mmult_f32(in a: f32[m*k], in b: f32[k*n], out c: f32[m*n], m: u32, k: u32, n: u32)"
        );
    }

    #[test]
    fn call_checks_lengths_from_dims() {
        let s = mmult();
        let call = |m: u64, k: u64, n: u64, alen: u64| {
            [
                ArgEntry::input(ElemType::F32, alen),
                ArgEntry::input(ElemType::F32, k.wrapping_mul(n).wrapping_mul(4)),
                ArgEntry::output(ElemType::F32, m.wrapping_mul(n).wrapping_mul(4)),
                ArgEntry::scalar(ElemType::U32, m),
                ArgEntry::scalar(ElemType::U32, k),
                ArgEntry::scalar(ElemType::U32, n),
            ]
        };
        assert!(s.check_call(&call(2, 3, 4, 24)).is_ok());
        let e = s.check_call(&call(2, 3, 4, 28)).unwrap_err();
        assert_eq!((e.status, e.detail), (Status::BadArgument, 0));
        let mut wrong_type = call(2, 3, 4, 24);
        wrong_type[1].ty = ElemType::U32.raw();
        assert_eq!(s.check_call(&wrong_type).unwrap_err().detail, 1);
        assert!(s.check_call(&call(2, 3, 4, 24)[..5]).is_err());
        // Dimensions whose product overflows are refused, not wrapped.
        let big = u64::from(u32::MAX);
        assert_eq!(
            s.check_call(&call(big, big, big, 0)).unwrap_err().status,
            Status::BadArgument
        );
    }

    #[test]
    fn invalid_signatures_are_refused() {
        let mut s = mmult();
        s.args[0].dims[0] = Some(1);
        assert!(matches!(s.validate(), Err(SigError::BadDim { .. })));
        let mut s = mmult();
        s.name = "x".repeat(32);
        assert!(matches!(s.validate(), Err(SigError::BadName { .. })));
        let mut s = mmult();
        s.args[2].count = 0;
        assert!(matches!(s.validate(), Err(SigError::BadCount { .. })));
    }
}
