//! Elements as people write them: inline lists for `--in NAME=1,2,3` and the printed
//! form of outputs (`c = [3, 5, 7]`), by the argument's element type.

use std::fmt::Write as _;

use vfpga_proto::ElemType;

use crate::cli::bind::parse_scalar;

/// How outputs without `--out` are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `NAME = [v, v, ...]`: one line per output, values by element type.
    Values,
    /// `NAME = 0a0b0c...`: one line per output, the little-endian bytes in hex (as a
    /// digest is shown; what vfpga printed before it knew element types).
    Hex,
    /// The bytes themselves on stdout, outputs one after another in signature order.
    Raw,
}

/// Parses an inline list of `ty` elements: `1,2,3`, `[1, 2, 3]`, `1 2 3` (commas or
/// white space between them), `[]` for none. Returns the little-endian bytes.
pub fn parse_list(ty: ElemType, text: &str) -> Result<Vec<u8>, String> {
    let t = text.trim();
    let inner = match t.strip_prefix('[') {
        Some(r) => r
            .strip_suffix(']')
            .ok_or_else(|| format!("`{text}`: a list that opens with [ must close with ]"))?,
        None if t.is_empty() => {
            return Err("an empty value: give @FILE, values like 1,2,3, or [] for none".into())
        }
        None => t,
    };
    let size = ty.size();
    let mut out = Vec::new();
    for (i, v) in inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|v| !v.is_empty())
        .enumerate()
    {
        let bits = parse_scalar(ty, v).map_err(|e| format!("element {}: {e}", i + 1))?;
        out.extend_from_slice(&bits.to_le_bytes()[..size]);
    }
    Ok(out)
}

/// True if `text` reads as an inline list of `ty` (and so, without `@`, as values
/// rather than a file name).
pub fn is_list(ty: ElemType, text: &str) -> bool {
    parse_list(ty, text).is_ok()
}

/// Element `i` of `data` as text: integers in decimal, floats in the shortest form
/// that reads back to the same bits (`1.5`, `3.0`, `1e-7`, `NaN`, `inf`).
fn element(ty: ElemType, e: &[u8]) -> String {
    let mut b = [0u8; 8];
    b[..e.len()].copy_from_slice(e);
    let (u, b4, b2) = (
        u64::from_le_bytes(b),
        [b[0], b[1], b[2], b[3]],
        [b[0], b[1]],
    );
    match ty {
        ElemType::U8 => b[0].to_string(),
        ElemType::I16 => i16::from_le_bytes(b2).to_string(),
        ElemType::I32 => i32::from_le_bytes(b4).to_string(),
        ElemType::U32 => u32::from_le_bytes(b4).to_string(),
        ElemType::F32 => format!("{:?}", f32::from_le_bytes(b4)),
        ElemType::U64 => u.to_string(),
        ElemType::I64 => i64::from_le_bytes(b).to_string(),
        ElemType::F64 => format!("{:?}", f64::from_le_bytes(b)),
    }
}

/// One printed line for output `name` (without its newline): `name = [1, 2, 3]` or
/// `name = 010000000200000003000000`, at most `show` elements (0: all), a cut list
/// ending in `...`. Returns the line and whether it was cut.
pub fn line(name: &str, ty: ElemType, data: &[u8], format: Format, show: usize) -> (String, bool) {
    let total = data.len() / ty.size();
    let n = if show == 0 { total } else { total.min(show) };
    let cut = n < total;
    let shown = &data[..n * ty.size()];
    let mut s = format!("{name} = ");
    match format {
        Format::Hex | Format::Raw => {
            for b in shown {
                let _ = write!(s, "{b:02x}");
            }
            if cut {
                s.push_str("...");
            }
        }
        Format::Values => {
            s.push('[');
            for (i, e) in shown.chunks_exact(ty.size()).enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                s.push_str(&element(ty, e));
            }
            if cut {
                s.push_str(", ...");
            }
            s.push(']');
        }
    }
    (s, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_by_element_type() {
        assert_eq!(
            parse_list(ElemType::U32, "1,2,0x10"),
            Ok(vec![1, 0, 0, 0, 2, 0, 0, 0, 16, 0, 0, 0])
        );
        assert_eq!(
            parse_list(ElemType::I16, "[-1, 2 , -32768]"),
            Ok(vec![0xff, 0xff, 2, 0, 0x00, 0x80])
        );
        assert_eq!(parse_list(ElemType::U8, " 97 98\t99 "), Ok(b"abc".to_vec()));
        // 1.5 is 0x3fc00000 in binary32; -2 in binary64 is 0xc000000000000000.
        assert_eq!(parse_list(ElemType::F32, "1.5"), Ok(vec![0, 0, 0xc0, 0x3f]));
        assert_eq!(
            parse_list(ElemType::F64, "-2"),
            Ok(vec![0, 0, 0, 0, 0, 0, 0, 0xc0])
        );
        assert_eq!(
            parse_list(ElemType::I64, "-1"),
            Ok(vec![0xff; 8]),
            "two's complement"
        );
        assert_eq!(parse_list(ElemType::U32, "[]"), Ok(vec![]));
        assert_eq!(parse_list(ElemType::U32, "[ ]"), Ok(vec![]));
    }

    #[test]
    fn bad_lists_say_which_element() {
        let e = parse_list(ElemType::U32, "1,2,x").unwrap_err();
        assert_eq!(e, "element 3: `x` is not a valid u32 value");
        let e = parse_list(ElemType::U8, "255,256").unwrap_err();
        assert_eq!(e, "element 2: `256` is out of range for u8");
        let e = parse_list(ElemType::I16, "[1,2").unwrap_err();
        assert!(e.contains("must close with ]"), "{e}");
        let e = parse_list(ElemType::U32, "").unwrap_err();
        assert!(e.contains("[] for none"), "{e}");
        assert!(!is_list(ElemType::U32, "in/a.bin"));
        assert!(!is_list(ElemType::F32, "1.5.bin"));
        assert!(is_list(ElemType::F32, "1.5,2"));
    }

    #[test]
    fn outputs_print_by_element_type() {
        let u32s = [3u8, 0, 0, 0, 5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            line("c", ElemType::U32, &u32s, Format::Values, 64),
            ("c = [3, 5, 4294967295]".into(), false)
        );
        assert_eq!(
            line("c", ElemType::I32, &u32s, Format::Values, 64).0,
            "c = [3, 5, -1]"
        );
        assert_eq!(
            line("c", ElemType::I16, &u32s[..4], Format::Values, 0).0,
            "c = [3, 0]"
        );
        assert_eq!(
            line("c", ElemType::U32, &u32s, Format::Values, 2),
            ("c = [3, 5, ...]".into(), true)
        );
        assert_eq!(
            line("c", ElemType::U32, &u32s, Format::Hex, 2),
            ("c = 0300000005000000...".into(), true)
        );
        assert_eq!(
            line("d", ElemType::U8, b"\xba\x78\x16", Format::Hex, 0).0,
            "d = ba7816"
        );
        // binary32 0x3fc00000 = 1.5, 0x40400000 = 3.0, 0x7fc00000 = NaN, 0xff800000 = -inf.
        let f = [
            0, 0, 0xc0, 0x3f, 0, 0, 0x40, 0x40, 0, 0, 0xc0, 0x7f, 0, 0, 0x80, 0xff,
        ];
        assert_eq!(
            line("y", ElemType::F32, &f, Format::Values, 0).0,
            "y = [1.5, 3.0, NaN, -inf]"
        );
        // binary64 0x3fb999999999999a = 0.1.
        let d = [0x9a, 0x99, 0x99, 0x99, 0x99, 0x99, 0xb9, 0x3f];
        assert_eq!(
            line("y", ElemType::F64, &d, Format::Values, 0).0,
            "y = [0.1]"
        );
        assert_eq!(
            line("e", ElemType::U64, &[], Format::Values, 64),
            ("e = []".into(), false)
        );
    }

    #[test]
    fn printed_values_read_back_to_the_same_bits() {
        let f: Vec<u8> = [0.1f32, -0.0, 1e-45, f32::MAX, f32::INFINITY, 16_777_217.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let (l, _) = line("x", ElemType::F32, &f, Format::Values, 0);
        let list = l.strip_prefix("x = ").unwrap();
        assert_eq!(parse_list(ElemType::F32, list).unwrap(), f, "{l}");
        let i: Vec<u8> = [i64::MIN, -1, 0, i64::MAX]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let (l, _) = line("x", ElemType::I64, &i, Format::Values, 0);
        assert_eq!(
            parse_list(ElemType::I64, l.strip_prefix("x = ").unwrap()).unwrap(),
            i
        );
    }
}
