//! Little-endian encoding of fixed-size ABI structures.
//!
//! Every structure of the device ABI is declared once with this crate's `wire_struct!`
//! macro. It derives the byte encoding from the `#[repr(C)]` field offsets, so the
//! encoding, the Rust layout and (through the layout test) the C header cannot drift
//! apart.

/// A value that has a fixed little-endian encoding inside an ABI structure.
pub trait WireField: Copy {
    /// Encodes `self` into the start of `out` (which is at least `size_of::<Self>()` long).
    fn put(self, out: &mut [u8]);
    /// Decodes a value from the start of `src` (which is at least `size_of::<Self>()` long).
    fn get(src: &[u8]) -> Self;
}

macro_rules! wire_int {
    ($($t:ty),*) => {$(
        impl WireField for $t {
            #[inline]
            fn put(self, out: &mut [u8]) {
                out[..core::mem::size_of::<$t>()].copy_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn get(src: &[u8]) -> Self {
                let mut b = [0u8; core::mem::size_of::<$t>()];
                b.copy_from_slice(&src[..core::mem::size_of::<$t>()]);
                <$t>::from_le_bytes(b)
            }
        }
    )*};
}
wire_int!(u8, u16, u32, u64);

impl<T: WireField, const N: usize> WireField for [T; N] {
    fn put(self, out: &mut [u8]) {
        let step = core::mem::size_of::<T>();
        for (i, v) in self.into_iter().enumerate() {
            v.put(&mut out[i * step..]);
        }
    }
    fn get(src: &[u8]) -> Self {
        let step = core::mem::size_of::<T>();
        core::array::from_fn(|i| T::get(&src[i * step..]))
    }
}

/// Declares an ABI structure: `#[repr(C)]`, no implicit padding (checked at compile
/// time), with `SIZE`, `to_bytes`, `from_bytes`, the C name and a field table used by
/// the Rust/C layout test.
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident as $cname:literal {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        const _: () = assert!(
            core::mem::size_of::<$name>() == 0 $( + core::mem::size_of::<$ty>() )*,
            "ABI structure has implicit padding"
        );

        impl $name {
            /// Encoded size in bytes.
            pub const SIZE: usize = core::mem::size_of::<Self>();
            /// Name of the matching structure in `vfpga_abi.h`.
            pub const C_NAME: &'static str = $cname;
            /// `(field, offset, size)` for every field, in declaration order.
            pub const FIELDS: &'static [(&'static str, usize, usize)] = &[
                $( (stringify!($field), core::mem::offset_of!($name, $field), core::mem::size_of::<$ty>()), )*
            ];

            /// Little-endian encoding.
            pub fn to_bytes(&self) -> [u8; Self::SIZE] {
                let mut out = [0u8; Self::SIZE];
                $( $crate::wire::WireField::put(self.$field, &mut out[core::mem::offset_of!($name, $field)..]); )*
                out
            }

            /// Decodes from exactly `SIZE` bytes; performs no validation.
            pub fn from_bytes(src: &[u8; Self::SIZE]) -> Self {
                Self {
                    $( $field: $crate::wire::WireField::get(&src[core::mem::offset_of!($name, $field)..]), )*
                }
            }
        }

        impl Default for $name {
            /// All fields zero.
            fn default() -> Self {
                Self::from_bytes(&[0u8; Self::SIZE])
            }
        }

        impl $crate::wire::WireField for $name {
            fn put(self, out: &mut [u8]) {
                out[..Self::SIZE].copy_from_slice(&self.to_bytes());
            }
            fn get(src: &[u8]) -> Self {
                let mut b = [0u8; Self::SIZE];
                b.copy_from_slice(&src[..Self::SIZE]);
                Self::from_bytes(&b)
            }
        }
    };
}
pub(crate) use wire_struct;

/// Copies `s` into a NUL-padded fixed-size name field. Returns `None` if `s` does not
/// fit with its terminating NUL or contains a NUL byte.
pub fn name_field<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() >= N || b.contains(&0) {
        return None;
    }
    let mut out = [0u8; N];
    out[..b.len()].copy_from_slice(b);
    Some(out)
}

/// Reads a NUL-padded name field. Returns `None` if it is not NUL-terminated UTF-8.
pub fn name_str(field: &[u8]) -> Option<&str> {
    let end = field.iter().position(|&c| c == 0)?;
    core::str::from_utf8(&field[..end]).ok()
}
