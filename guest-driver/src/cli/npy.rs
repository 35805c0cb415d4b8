//! NumPy's `.npy` array files (format versions 1.0, 2.0 and 3.0), read for
//! `--in NAME=@FILE.npy` and written for `--out NAME=@FILE.npy`.
//!
//! Handwritten on purpose: a file is a magic string, a version, a header length and a
//! Python dict literal with three keys (`descr`, `fortran_order`, `shape`) before the
//! raw elements, and only the eight plain little-endian element types of the ABI are
//! wanted here. The crates that read it bring a general array model (ndarray, or every
//! dtype NumPy has) into a static guest binary that needs none of it, and since these
//! files are whatever a user hands the CLI, every length and number in them is checked
//! here against the bytes really present before anything is sized from it.
//!
//! The format: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>.

use vfpga_proto::ElemType;

/// `\x93NUMPY`, the first six bytes of every `.npy` file.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Nesting the header parser follows (tuples and lists in values) before it refuses:
/// a header of ten thousand `(` must not exhaust the stack.
const MAX_DEPTH: usize = 8;

/// What is wrong with a `.npy` file, said so that its owner can fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NpyError {
    /// The magic string is missing.
    #[error("not a .npy file (it does not start with \\x93NUMPY)")]
    NotNpy,
    /// A format version this reader does not know.
    #[error("format version {0}.{1} is not one this reader knows (1.0, 2.0 and 3.0 are)")]
    Version(u8, u8),
    /// The file ends inside the preamble or the header.
    #[error("truncated: the header says it is {need} bytes, but only {have} follow")]
    TruncatedHeader {
        /// Bytes the header length field claims.
        need: u64,
        /// Bytes the file has after the preamble.
        have: usize,
    },
    /// The file ends before the header length field.
    #[error("truncated: {0} bytes, too short for a .npy preamble")]
    TooShort(usize),
    /// The header is not the dict literal NumPy writes.
    #[error("its header is not a valid dictionary: {what} at byte {at} of the header")]
    Header {
        /// What was expected or found.
        what: String,
        /// Offset in the header text.
        at: usize,
    },
    /// The dict lacks a key, has an unknown or repeated one.
    #[error("its header must have exactly the keys 'descr', 'fortran_order' and 'shape' ({0})")]
    Keys(String),
    /// A key holds a value of the wrong kind.
    #[error("its header's {key} is not {want}")]
    Value {
        /// The key.
        key: &'static str,
        /// What it should be.
        want: &'static str,
    },
    /// A structured (record) dtype.
    #[error(
        "it holds a structured (record) array; save one plain field: np.save(path, a['name'])"
    )]
    Structured,
    /// Column-major data.
    #[error(
        "it is in Fortran (column-major) order; \
         save a C-ordered copy: np.save(path, np.ascontiguousarray(a))"
    )]
    Fortran,
    /// Not the element type the argument has.
    #[error(
        "it holds dtype '{descr}'{named} but the argument is {w}: \
         save it as {w}, e.g. np.save(path, a.astype(np.{np}))",
        named = numpy_name(.descr).map(|n| format!(" ({n})")).unwrap_or_default(),
        w = .want.name(),
        np = numpy_type(*.want)
    )]
    Dtype {
        /// The file's dtype string.
        descr: String,
        /// The argument's element type.
        want: ElemType,
    },
    /// The right type, but big-endian.
    #[error(
        "it holds big-endian '{descr}' but vfpga buffers are little-endian: \
         save a.astype('<{}') instead",
        .descr.get(1..).unwrap_or_default()
    )]
    BigEndian {
        /// The file's dtype string.
        descr: String,
    },
    /// A shape whose element count overflows 64 bits.
    #[error("its shape {0} has more elements than any buffer can hold")]
    ShapeTooLarge(String),
    /// Data shorter or longer than the shape says.
    #[error(
        "its shape {shape} means {need} bytes of data, but {have} bytes follow the header{}",
        if .have < .need { " (truncated)" } else { "" }
    )]
    DataSize {
        /// The shape as written.
        shape: String,
        /// Bytes the shape and dtype imply.
        need: u64,
        /// Bytes present.
        have: u64,
    },
}

/// A checked array in a `.npy` file: its shape and its raw little-endian elements.
#[derive(Debug, PartialEq, Eq)]
pub struct Array<'a> {
    /// Dimensions, outermost first (C order).
    pub shape: Vec<u64>,
    /// The elements, exactly `product(shape) × element size` bytes.
    pub data: &'a [u8],
}

impl Array<'_> {
    /// The shape as Python writes it: `(3,)`, `(2, 3)`, `()`.
    pub fn shape_text(&self) -> String {
        shape_text(&self.shape)
    }
}

fn shape_text(shape: &[u64]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The dtype string NumPy writes for `ty` (little-endian; `|` for one byte).
pub fn descr(ty: ElemType) -> &'static str {
    match ty {
        ElemType::U8 => "|u1",
        ElemType::I16 => "<i2",
        ElemType::I32 => "<i4",
        ElemType::U32 => "<u4",
        ElemType::F32 => "<f4",
        ElemType::U64 => "<u8",
        ElemType::I64 => "<i8",
        ElemType::F64 => "<f8",
    }
}

/// NumPy's name for `ty`, as in `np.float32`.
fn numpy_type(ty: ElemType) -> &'static str {
    match ty {
        ElemType::U8 => "uint8",
        ElemType::I16 => "int16",
        ElemType::I32 => "int32",
        ElemType::U32 => "uint32",
        ElemType::F32 => "float32",
        ElemType::U64 => "uint64",
        ElemType::I64 => "int64",
        ElemType::F64 => "float64",
    }
}

/// NumPy's name for a common dtype string, to say what a file holds.
fn numpy_name(descr: &str) -> Option<&'static str> {
    let (kind, size) = descr.get(1..)?.split_at_checked(1)?;
    Some(match (kind, size) {
        ("b", "1") => "bool",
        ("i", "1") => "int8",
        ("i", "2") => "int16",
        ("i", "4") => "int32",
        ("i", "8") => "int64",
        ("u", "1") => "uint8",
        ("u", "2") => "uint16",
        ("u", "4") => "uint32",
        ("u", "8") => "uint64",
        ("f", "2") => "float16",
        ("f", "4") => "float32",
        ("f", "8") => "float64",
        ("c", "8") => "complex64",
        ("c", "16") => "complex128",
        _ => return None,
    })
}

/// Checks that the dtype string `d` holds elements of `want`.
fn check_dtype(d: &str, want: ElemType) -> Result<(), NpyError> {
    let wanted = descr(want);
    let body = wanted.get(1..).unwrap_or_default();
    if d == wanted {
        return Ok(());
    }
    match d.split_at_checked(1) {
        // One byte has no byte order: '<u1', '>u1' and '=u1' are '|u1'.
        Some(("<" | ">" | "=" | "|", rest)) if rest == body && want.size() == 1 => Ok(()),
        Some((">", rest)) if rest == body => Err(NpyError::BigEndian {
            descr: d.to_owned(),
        }),
        _ => Err(NpyError::Dtype {
            descr: d.to_owned(),
            want,
        }),
    }
}

/// Reads a whole `.npy` file and checks that it holds elements of `want`, in C order,
/// with exactly the data its shape says.
pub fn parse(bytes: &[u8], want: ElemType) -> Result<Array<'_>, NpyError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(NpyError::NotNpy);
    }
    let (&major, &minor) = match (bytes.get(6), bytes.get(7)) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err(NpyError::TooShort(bytes.len())),
    };
    let (len_bytes, start) = match (major, minor) {
        (1, 0) => (2, 10),
        (2 | 3, 0) => (4, 12),
        _ => return Err(NpyError::Version(major, minor)),
    };
    let Some(field) = bytes.get(8..start) else {
        return Err(NpyError::TooShort(bytes.len()));
    };
    let header_len = field
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    debug_assert_eq!(field.len(), len_bytes);
    let rest = &bytes[start..];
    let header = usize::try_from(header_len)
        .ok()
        .and_then(|n| rest.get(..n))
        .ok_or(NpyError::TruncatedHeader {
            need: header_len,
            have: rest.len(),
        })?;
    let data = &rest[header.len()..];
    if major == 3 && std::str::from_utf8(header).is_err() {
        return Err(NpyError::Header {
            what: "text that is not UTF-8 (required by version 3.0)".into(),
            at: 0,
        });
    }
    let dict = Parser::new(header).dict()?;
    let (descr, fortran, shape) = dict.fields()?;
    check_dtype(&descr, want)?;
    if fortran {
        return Err(NpyError::Fortran);
    }
    let text = shape_text(&shape);
    // An empty dimension makes an empty array, however large the others.
    let need = if shape.contains(&0) {
        Some(0)
    } else {
        shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .and_then(|n| n.checked_mul(want.size() as u64))
    }
    .ok_or_else(|| NpyError::ShapeTooLarge(text.clone()))?;
    if need != data.len() as u64 {
        return Err(NpyError::DataSize {
            shape: text,
            need,
            have: data.len() as u64,
        });
    }
    Ok(Array { shape, data })
}

/// The preamble and header of a one-dimensional array of `len` elements of `ty`, as
/// NumPy writes it: version 1.0 (2.0 if the header outgrows 64 KiB, which a single
/// dimension cannot), the dict padded with spaces and a newline so the data starts on a
/// 64-byte boundary.
pub fn header(ty: ElemType, len: u64) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': ({len},), }}",
        descr(ty)
    );
    let (version, field) = if dict.len() + 1 + 10 <= usize::from(u16::MAX) {
        (1u8, 2)
    } else {
        (2, 4)
    };
    let preamble = MAGIC.len() + 2 + field;
    let pad = (64 - (preamble + dict.len() + 1) % 64) % 64;
    let header_len = dict.len() + pad + 1;
    let mut out = Vec::with_capacity(preamble + header_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    out.extend_from_slice(&(header_len as u64).to_le_bytes()[..field]);
    out.extend_from_slice(dict.as_bytes());
    out.resize(out.len() + pad, b' ');
    out.push(b'\n');
    out
}

/// A value in the header's dict literal.
#[derive(Debug)]
enum Value {
    Str(String),
    Bool(bool),
    Int(Option<u64>),
    Tuple(Vec<Value>),
    List,
}

/// The dict: keys and values in the order written.
struct Dict(Vec<(String, Value)>);

impl Dict {
    /// `(descr, fortran_order, shape)`, each checked for its kind.
    fn fields(self) -> Result<(String, bool, Vec<u64>), NpyError> {
        let mut descr = None;
        let mut fortran = None;
        let mut shape = None;
        for (k, v) in self.0 {
            let seen = match k.as_str() {
                "descr" => descr.replace(v).is_some(),
                "fortran_order" => fortran.replace(v).is_some(),
                "shape" => shape.replace(v).is_some(),
                _ => return Err(NpyError::Keys(format!("it has '{k}'"))),
            };
            if seen {
                return Err(NpyError::Keys(format!("'{k}' appears twice")));
            }
        }
        let missing = |k: &str| NpyError::Keys(format!("'{k}' is missing"));
        let descr = match descr.ok_or_else(|| missing("descr"))? {
            Value::Str(s) => s,
            Value::List => return Err(NpyError::Structured),
            _ => {
                return Err(NpyError::Value {
                    key: "'descr'",
                    want: "a dtype string",
                })
            }
        };
        let Value::Bool(fortran) = fortran.ok_or_else(|| missing("fortran_order"))? else {
            return Err(NpyError::Value {
                key: "'fortran_order'",
                want: "True or False",
            });
        };
        let not_shape = NpyError::Value {
            key: "'shape'",
            want: "a tuple of non-negative integers",
        };
        let Value::Tuple(dims) = shape.ok_or_else(|| missing("shape"))? else {
            return Err(not_shape);
        };
        let mut shape = Vec::with_capacity(dims.len());
        for d in dims {
            match d {
                Value::Int(Some(n)) => shape.push(n),
                Value::Int(None) => {
                    return Err(NpyError::ShapeTooLarge(
                        "(a dimension beyond 64 bits)".into(),
                    ))
                }
                _ => return Err(not_shape),
            }
        }
        Ok((descr, fortran, shape))
    }
}

/// A recursive-descent parser for the subset of Python literals NumPy headers use:
/// dicts, strings, True/False, non-negative integers, tuples (and lists, recognised
/// only to be refused).
struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn new(s: &'a [u8]) -> Self {
        Self { s, at: 0 }
    }

    fn err(&self, what: impl Into<String>) -> NpyError {
        NpyError::Header {
            what: what.into(),
            at: self.at,
        }
    }

    fn skip_space(&mut self) {
        while self
            .s
            .get(self.at)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.s.get(self.at).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), NpyError> {
        match self.peek() {
            Some(x) if x == c => {
                self.at += 1;
                Ok(())
            }
            Some(x) => Err(self.err(format!("expected '{}', found {}", char::from(c), shown(x)))),
            None => Err(self.err(format!("expected '{}', found the end", char::from(c)))),
        }
    }

    /// `{ 'key': value, ... }` and nothing after it but white space.
    fn dict(mut self) -> Result<Dict, NpyError> {
        self.expect(b'{')?;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.at += 1;
                break;
            }
            let Value::Str(key) = self.value(1)? else {
                return Err(self.err("a key that is not a string"));
            };
            self.expect(b':')?;
            let v = self.value(1)?;
            items.push((key, v));
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {}
                Some(x) => {
                    return Err(self.err(format!("expected ',' or '}}', found {}", shown(x))))
                }
                None => return Err(self.err("the end before '}'")),
            }
        }
        if let Some(x) = self.peek() {
            return Err(self.err(format!("{} after the closing '}}'", shown(x))));
        }
        Ok(Dict(items))
    }

    fn value(&mut self, depth: usize) -> Result<Value, NpyError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("values nested deeper than {MAX_DEPTH}")));
        }
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => self.string(q),
            Some(b'(') => self.sequence(b')', depth).map(Value::Tuple),
            Some(b'[') => self.sequence(b']', depth).map(|_| Value::List),
            Some(b'0'..=b'9') => Ok(self.int()),
            Some(b'T' | b'F') => self.word(),
            Some(x) => Err(self.err(format!("unexpected {}", shown(x)))),
            None => Err(self.err("the end where a value belongs")),
        }
    }

    fn string(&mut self, quote: u8) -> Result<Value, NpyError> {
        self.at += 1;
        let start = self.at;
        loop {
            match self.s.get(self.at) {
                None => return Err(self.err("a string that never ends")),
                Some(b'\\') => return Err(self.err("an escape in a string")),
                Some(&c) if c == quote => break,
                Some(_) => self.at += 1,
            }
        }
        // Latin-1 (versions 1 and 2) or UTF-8 (3): the keys and dtypes that matter
        // are ASCII; anything else only needs to be shown.
        let text = String::from_utf8_lossy(&self.s[start..self.at]).into_owned();
        self.at += 1;
        Ok(Value::Str(text))
    }

    /// Elements up to `close`, comma-separated, a trailing comma allowed.
    fn sequence(&mut self, close: u8, depth: usize) -> Result<Vec<Value>, NpyError> {
        self.at += 1;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(close) {
                self.at += 1;
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(x) if x == close => {}
                Some(x) => {
                    return Err(self.err(format!(
                        "expected ',' or '{}', found {}",
                        char::from(close),
                        shown(x)
                    )))
                }
                None => return Err(self.err("the end inside a tuple or list")),
            }
        }
    }

    /// Decimal digits (and the `L` of Python 2 longs); `Int(None)` if over 64 bits.
    fn int(&mut self) -> Value {
        let mut v = Some(0u64);
        while let Some(&c @ b'0'..=b'9') = self.s.get(self.at) {
            v = v
                .and_then(|v| v.checked_mul(10))
                .and_then(|v| v.checked_add(u64::from(c - b'0')));
            self.at += 1;
        }
        if self.s.get(self.at) == Some(&b'L') {
            self.at += 1;
        }
        Value::Int(v)
    }

    fn word(&mut self) -> Result<Value, NpyError> {
        let rest = &self.s[self.at..];
        for (w, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if rest.starts_with(w)
                && !rest
                    .get(w.len())
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
            {
                self.at += w.len();
                return Ok(Value::Bool(v));
            }
        }
        Err(self.err("a name other than True or False"))
    }
}

/// A byte for a message: the character, or its code if it is not printable.
fn shown(c: u8) -> String {
    if c.is_ascii_graphic() {
        format!("'{}'", char::from(c))
    } else {
        format!("byte {c:#04x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file as NumPy 1.24 writes `np.array([1, 2, 3], dtype='<u4')`, byte by byte:
    /// magic, version 1.0, header length 118 (0x76), the dict with NumPy's spare
    /// spaces, the newline at offset 127, then 1, 2, 3 as little-endian u32.
    fn numpy_u32_123() -> Vec<u8> {
        let mut f = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
        let dict = b"{'descr': '<u4', 'fortran_order': False, 'shape': (3,), }";
        f.extend_from_slice(dict);
        f.resize(127, b' ');
        f.push(b'\n');
        f.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
        f
    }

    /// A file with the given preamble version and header text (length computed), then
    /// `data`.
    fn file(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut f = b"\x93NUMPY".to_vec();
        f.extend_from_slice(&[version, 0]);
        if version == 1 {
            f.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
        } else {
            f.extend_from_slice(&u32::try_from(header.len()).unwrap().to_le_bytes());
        }
        f.extend_from_slice(header.as_bytes());
        f.extend_from_slice(data);
        f
    }

    fn err(bytes: &[u8], want: ElemType) -> String {
        parse(bytes, want).unwrap_err().to_string()
    }

    #[test]
    fn reads_what_numpy_writes() {
        let f = numpy_u32_123();
        let a = parse(&f, ElemType::U32).unwrap();
        assert_eq!(a.shape, [3]);
        assert_eq!(a.data, &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(a.shape_text(), "(3,)");
    }

    #[test]
    fn reads_versions_2_and_3_and_other_shapes() {
        let d = [0u8; 2 * 3 * 8];
        for v in [1, 2, 3] {
            let f = file(
                v,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }\n",
                &d,
            );
            let a = parse(&f, ElemType::F64).unwrap();
            assert_eq!((a.shape.as_slice(), a.data.len()), (&[2u64, 3][..], 48));
            assert_eq!(a.shape_text(), "(2, 3)");
        }
        // A 0-d array is one element; keys in any order, double quotes, no trailing
        // comma, the `L` of Python 2 longs.
        let f = file(
            1,
            "{\"shape\": (), \"fortran_order\": False, \"descr\": \"|u1\"}",
            &[7],
        );
        assert_eq!(parse(&f, ElemType::U8).unwrap().data, &[7]);
        let f = file(
            1,
            "{'descr': '<i2', 'fortran_order': False, 'shape': (2L,)}",
            &[1, 0, 2, 0],
        );
        assert_eq!(parse(&f, ElemType::I16).unwrap().shape, [2]);
        // One byte has no byte order.
        for d in ["<u1", ">u1", "=u1"] {
            let f = file(
                1,
                &format!("{{'descr': '{d}', 'fortran_order': False, 'shape': (0,), }}"),
                &[],
            );
            assert!(parse(&f, ElemType::U8).is_ok(), "{d}");
        }
    }

    #[test]
    fn writes_what_it_reads_and_numpy_would_write() {
        // For this array NumPy's spare spaces and the alignment padding add up to the
        // same bytes.
        let h = header(ElemType::U32, 3);
        assert_eq!(h, numpy_u32_123()[..128]);
        for ty in [ElemType::U8, ElemType::I16, ElemType::F64] {
            let h = header(ty, 1 << 40);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(*h.last().unwrap(), b'\n');
        }
    }

    #[test]
    fn refuses_wrong_dtypes_with_the_fix() {
        let f = |d: &str| {
            file(
                1,
                &format!("{{'descr': '{d}', 'fortran_order': False, 'shape': (1,), }}"),
                &[0; 8],
            )
        };
        let e = err(&f("<f8"), ElemType::F32);
        assert!(
            e.contains("dtype '<f8' (float64) but the argument is f32")
                && e.contains("a.astype(np.float32)"),
            "{e}"
        );
        let e = err(&f("<i4"), ElemType::U32);
        assert!(e.contains("'<i4' (int32) but the argument is u32"), "{e}");
        let e = err(&f(">f4"), ElemType::F32);
        assert!(
            e.contains("big-endian '>f4'") && e.contains("astype('<f4')"),
            "{e}"
        );
        let e = err(&f("|b1"), ElemType::U8);
        assert!(e.contains("'|b1' (bool)"), "{e}");
        let e = err(&f("<M8[ns]"), ElemType::U64);
        assert!(e.contains("dtype '<M8[ns]' but the argument is u64"), "{e}");
        let e = err(&f(""), ElemType::U8);
        assert!(e.contains("dtype ''"), "{e}");
        let s = file(
            1,
            "{'descr': [('x', '<f4'), ('y', '<f4')], 'fortran_order': False, 'shape': (1,), }",
            &[0; 8],
        );
        assert!(err(&s, ElemType::F32).contains("structured"));
    }

    #[test]
    fn refuses_fortran_order() {
        let f = file(
            1,
            "{'descr': '<u4', 'fortran_order': True, 'shape': (2, 2), }",
            &[0; 16],
        );
        assert_eq!(parse(&f, ElemType::U32), Err(NpyError::Fortran));
        assert!(err(&f, ElemType::U32).contains("np.ascontiguousarray"));
    }

    #[test]
    fn refuses_data_of_another_size() {
        let h = "{'descr': '<u4', 'fortran_order': False, 'shape': (2, 3), }";
        let e = err(&file(1, h, &[0; 20]), ElemType::U32);
        assert_eq!(
            e,
            "its shape (2, 3) means 24 bytes of data, but 20 bytes follow the header (truncated)"
        );
        let e = err(&file(1, h, &[0; 25]), ElemType::U32);
        assert_eq!(
            e,
            "its shape (2, 3) means 24 bytes of data, but 25 bytes follow the header"
        );
        let mut f = numpy_u32_123();
        f.pop();
        assert!(err(&f, ElemType::U32).contains("(truncated)"));
    }

    #[test]
    fn huge_shapes_are_refused_before_anything_is_sized() {
        for shape in [
            "(18446744073709551615, 2)",
            "(4294967296, 4294967296)",
            "(4611686018427387904,)",
        ] {
            let h = format!("{{'descr': '<u4', 'fortran_order': False, 'shape': {shape}, }}");
            let e = err(&file(1, &h, &[0; 4]), ElemType::U32);
            assert!(
                e.contains("more elements than any buffer can hold"),
                "{shape}: {e}"
            );
        }
        // An empty dimension: an empty array, not an overflow.
        let h = "{'descr': '<u4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776, 0), }";
        assert!(err(&file(1, h, &[0; 4]), ElemType::U32).contains("means 0 bytes of data"));
        // Beyond 64 bits in one dimension.
        let h =
            "{'descr': '<u4', 'fortran_order': False, 'shape': (99999999999999999999999999,), }";
        assert!(err(&file(1, h, &[]), ElemType::U32).contains("beyond 64 bits"));
        // Big but representable: a truncation, not an allocation.
        let h = "{'descr': '<u1', 'fortran_order': False, 'shape': (1099511627776,), }";
        assert!(err(&file(1, h, &[1, 2]), ElemType::U8)
            .contains("means 1099511627776 bytes of data, but 2 bytes follow"));
        // A zero dimension makes any other one harmless.
        let h = "{'descr': '<u4', 'fortran_order': False, 'shape': (0, 18446744073709551615), }";
        assert_eq!(
            parse(&file(1, h, &[]), ElemType::U32).unwrap().data.len(),
            0
        );
    }

    #[test]
    fn lying_header_lengths_and_truncated_preambles() {
        let good = numpy_u32_123();
        // A header length past the end of the file, in each version's field width.
        let mut f = good.clone();
        f[8] = 0xff;
        f[9] = 0xff;
        assert_eq!(
            parse(&f, ElemType::U32),
            Err(NpyError::TruncatedHeader {
                need: 0xffff,
                have: good.len() - 10
            })
        );
        let mut f = b"\x93NUMPY\x02\x00\xff\xff\xff\xff".to_vec();
        f.extend_from_slice(&[b' '; 100]);
        assert!(err(&f, ElemType::U32).contains("says it is 4294967295 bytes, but only 100"));
        // A header length that stops inside the dict.
        let mut f = good.clone();
        f[8] = 20;
        assert!(err(&f, ElemType::U32).contains("header is not a valid dictionary"));
        // A header length that swallows the data: the dict then has garbage after it.
        let mut f = good.clone();
        f[8] = 0x76 + 4;
        assert!(err(&f, ElemType::U32).contains("after the closing '}'"));
        // Every prefix of a good file is refused cleanly.
        for n in 0..good.len() {
            assert!(parse(&good[..n], ElemType::U32).is_err(), "prefix {n}");
        }
        assert_eq!(
            parse(b"\x93NUMPY\x01", ElemType::U32),
            Err(NpyError::TooShort(7))
        );
        assert_eq!(
            parse(b"\x93NUMPY\x01\x00\x05", ElemType::U32),
            Err(NpyError::TooShort(9))
        );
        assert_eq!(parse(b"", ElemType::U32), Err(NpyError::NotNpy));
        assert_eq!(
            parse(b"PK\x03\x04 a zip", ElemType::U32),
            Err(NpyError::NotNpy)
        );
        assert_eq!(
            parse(b"\x93NUMPY\x04\x00\x00\x00", ElemType::U32),
            Err(NpyError::Version(4, 0))
        );
        assert_eq!(
            parse(b"\x93NUMPY\x01\x01\x00\x00", ElemType::U32),
            Err(NpyError::Version(1, 1))
        );
    }

    #[test]
    fn garbage_headers_are_refused_not_panicked_on() {
        let cases: &[(&str, &str)] = &[
            ("", "expected '{', found the end"),
            ("[1, 2]", "expected '{', found '['"),
            (
                "{'descr': '<u4', 'fortran_order': False, 'shape': (3,)",
                "the end before '}'",
            ),
            (
                "{'descr': '<u4' 'shape': (3,)}",
                "expected ',' or '}', found '''",
            ),
            ("{'descr: '<u4'}", "expected ':'"),
            (
                "{'descr': '<u4\\'', 'fortran_order': False, 'shape': (3,)}",
                "an escape",
            ),
            (
                "{'descr': '<u4, 'fortran_order': False}",
                "expected ',' or '}', found 'f'",
            ),
            (
                "{'descr': '<u4', 'fortran_order': false, 'shape': (3,)}",
                "unexpected 'f'",
            ),
            (
                "{'descr': '<u4', 'fortran_order': Falsey, 'shape': (3,)}",
                "other than True or False",
            ),
            (
                "{'descr': '<u4', 'fortran_order': False, 'shape': (-3,)}",
                "unexpected '-'",
            ),
            (
                "{'descr': '<u4', 'fortran_order': False, 'shape': (3 4)}",
                "expected ',' or ')'",
            ),
            (
                "{'descr': '<u4', 'fortran_order': False, 'shape': (3",
                "the end inside a tuple",
            ),
            (
                "{'descr': '<u4', 'fortran_order': False, 'shape': (3,",
                "the end where a value",
            ),
            ("{3: 4}", "a key that is not a string"),
            (
                "{'descr': '<u4', 'fortran_order': False, 'shape': (3,)}}",
                "after the closing",
            ),
            (
                "{'descr': '<u4', 'fortran_order': False, 'shape': (3,)}\0",
                "byte 0x00 after",
            ),
            ("{'descr': '<u4\n", "a string that never ends"),
        ];
        for (h, want) in cases {
            let e = err(&file(1, h, &[0; 12]), ElemType::U32);
            assert!(e.contains(want), "{h:?}: {e}");
        }
        let deep = format!(
            "{{'descr': '<u4', 'fortran_order': False, 'shape': {}3{}}}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        assert!(err(&file(2, &deep, &[]), ElemType::U32).contains("nested deeper than 8"));
        // Latin-1 bytes are fine in versions 1 and 2 (a dtype NumPy never writes, then);
        // version 3 promises UTF-8.
        let mut h = b"{'descr': '\xe9', 'fortran_order': False, 'shape': (1,)}".to_vec();
        let mut f = b"\x93NUMPY\x03\x00".to_vec();
        f.extend_from_slice(&u32::try_from(h.len()).unwrap().to_le_bytes());
        f.append(&mut h);
        assert!(err(&f, ElemType::U32).contains("not UTF-8"));
        f[6] = 2;
        assert!(err(&f, ElemType::U32).contains("dtype"));
    }

    /// Random damage to a good file (bytes changed, inserted, removed, the file cut):
    /// never a panic, and whatever is accepted is consistent with its header.
    #[test]
    #[allow(clippy::cast_possible_truncation)] // random numbers cut to size on purpose
    fn damaged_files_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let good = numpy_u32_123();
        let mut accepted = 0;
        for _ in 0..50_000 {
            let mut f = good.clone();
            for _ in 0..=next() % 3 {
                let at = (next() % f.len() as u64) as usize;
                let b = next() as u8;
                match next() % 4 {
                    0 => f[at] = b,
                    1 => f.insert(at, b),
                    2 => {
                        f.remove(at);
                    }
                    _ => f.truncate(at),
                }
                if f.is_empty() {
                    break;
                }
            }
            for ty in [ElemType::U32, ElemType::U8] {
                if let Ok(a) = parse(&f, ty) {
                    let n: u64 = a.shape.iter().product();
                    assert_eq!(n * ty.size() as u64, a.data.len() as u64);
                    accepted += 1;
                }
            }
        }
        // Damage to the padding or the data bytes leaves a valid file.
        assert!(accepted > 0);
    }

    #[test]
    fn wrong_keys_and_kinds() {
        let e = |h: &str| err(&file(1, h, &[0; 4]), ElemType::U32);
        assert!(e("{'descr': '<u4', 'shape': (1,)}").contains("'fortran_order' is missing"));
        assert!(
            e("{'descr': '<u4', 'fortran_order': False, 'shape': (1,), 'x': 1}")
                .contains("it has 'x'")
        );
        assert!(
            e("{'descr': '<u4', 'descr': '<u4', 'fortran_order': False, 'shape': (1,)}")
                .contains("'descr' appears twice")
        );
        assert!(e("{'descr': 4, 'fortran_order': False, 'shape': (1,)}")
            .contains("'descr' is not a dtype string"));
        assert!(e("{'descr': '<u4', 'fortran_order': 0, 'shape': (1,)}")
            .contains("'fortran_order' is not True or False"));
        assert!(e("{'descr': '<u4', 'fortran_order': False, 'shape': 1}")
            .contains("'shape' is not a tuple"));
        assert!(
            e("{'descr': '<u4', 'fortran_order': False, 'shape': ('1',)}")
                .contains("'shape' is not a tuple")
        );
        assert!(e("{'descr': '<u4', 'fortran_order': False, 'shape': [1]}")
            .contains("'shape' is not a tuple"));
    }
}
