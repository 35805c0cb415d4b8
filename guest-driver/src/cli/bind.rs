//! Turning command-line values and files into a kernel's arguments, by its signature.

use vfpga::{AlignedBuf, Arg};
use vfpga_proto::{ArgKind, ElemType, KernelSig};

use crate::cli::data::{self, Sink};

/// A `[NAME=]VALUE` item from the command line.
#[derive(Clone, Debug)]
pub struct Item {
    pub name: Option<String>,
    pub value: String,
}

impl std::str::FromStr for Item {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.split_once('=') {
            Some((n, v)) if !n.is_empty() && !n.contains('/') && !n.starts_with('@') => Item {
                name: Some(n.to_owned()),
                value: v.to_owned(),
            },
            _ => Item {
                name: None,
                value: s.to_owned(),
            },
        })
    }
}

/// Arguments ready to run: owned buffers and scalar bits, in signature order.
pub struct Bound {
    pub scalars: Vec<Option<u64>>,
    pub inputs: Vec<Option<AlignedBuf>>,
    pub outputs: Vec<Option<(AlignedBuf, Option<Sink>)>>,
}

impl Bound {
    /// The argument list for `Session::run`.
    pub fn args(&mut self, sig: &KernelSig) -> Vec<Arg<'_>> {
        let (scalars, inputs) = (&self.scalars, &self.inputs);
        sig.args
            .iter()
            .enumerate()
            .zip(self.outputs.iter_mut())
            .map(|((i, a), out)| match a.kind {
                ArgKind::Scalar => Arg::Scalar(a.ty, scalars[i].unwrap_or(0)),
                ArgKind::In => Arg::In(
                    a.ty,
                    inputs[i].as_ref().map_or(&[][..], AlignedBuf::as_slice),
                ),
                ArgKind::Out => Arg::Out(
                    a.ty,
                    out.as_mut().map_or(&mut [][..], |(b, _)| b.as_mut_slice()),
                ),
            })
            .collect()
    }
}

/// Parses a scalar of type `ty`: integers in decimal or 0x-hex with an optional K/M/G
/// (binary) suffix, floats in any Rust float syntax.
#[allow(clippy::cast_possible_truncation)] // every integer is range-checked first
pub fn parse_scalar(ty: ElemType, s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}` is not a valid {} value", ty.name());
    let int = |s: &str| -> Result<i128, String> {
        let (digits, mult) = match s.char_indices().last() {
            Some((i, 'K' | 'k')) => (&s[..i], 1i128 << 10),
            Some((i, 'M')) => (&s[..i], 1 << 20),
            Some((i, 'G')) => (&s[..i], 1 << 30),
            _ => (s, 1),
        };
        let (neg, digits) = digits
            .strip_prefix('-')
            .map_or((false, digits), |d| (true, d));
        let v = match digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            Some(h) => i128::from_str_radix(h, 16),
            None => digits.parse::<i128>(),
        }
        .map_err(|_| bad())?;
        Ok(if neg { -v } else { v } * mult)
    };
    let ranged = |v: i128, lo: i128, hi: i128| {
        if v < lo || v > hi {
            Err(format!("`{s}` is out of range for {}", ty.name()))
        } else {
            Ok(v)
        }
    };
    Ok(match ty {
        ElemType::U8 => ranged(int(s)?, 0, 0xff)? as u64,
        ElemType::U32 => ranged(int(s)?, 0, u32::MAX.into())? as u64,
        ElemType::U64 => ranged(int(s)?, 0, u64::MAX.into())? as u64,
        ElemType::I16 => {
            u64::from(ranged(int(s)?, i16::MIN.into(), i16::MAX.into())? as i16 as u16)
        }
        ElemType::I32 => {
            u64::from(ranged(int(s)?, i32::MIN.into(), i32::MAX.into())? as i32 as u32)
        }
        ElemType::I64 => ranged(int(s)?, i64::MIN.into(), i64::MAX.into())? as i64 as u64,
        ElemType::F32 => u64::from(s.parse::<f32>().map_err(|_| bad())?.to_bits()),
        ElemType::F64 => s.parse::<f64>().map_err(|_| bad())?.to_bits(),
    })
}

/// Assigns each item to an argument of `kind`: by name, or else to the next free one
/// in signature order.
fn assign<'a>(
    sig: &KernelSig,
    kind: ArgKind,
    items: &'a [Item],
    flag: &str,
) -> Result<Vec<Option<&'a str>>, String> {
    let mut slots: Vec<Option<&str>> = vec![None; sig.args.len()];
    let names: Vec<&str> = sig
        .args
        .iter()
        .filter(|a| a.kind == kind)
        .map(|a| a.name.as_str())
        .collect();
    for it in items {
        let idx = match &it.name {
            Some(n) => match sig.arg_index(n) {
                Some(i) if sig.args[i].kind == kind => i,
                _ => {
                    return Err(format!(
                        "{flag} {n}=...: `{n}` is not {} argument of {} (those are: {})",
                        kind_words(kind),
                        sig.name,
                        names.join(", ")
                    ))
                }
            },
            None => sig
                .args
                .iter()
                .enumerate()
                .position(|(i, a)| a.kind == kind && slots[i].is_none())
                .ok_or_else(|| {
                    format!(
                        "too many {flag} values: {} takes {} ({})",
                        sig.name,
                        names.len(),
                        names.join(", ")
                    )
                })?,
        };
        if slots[idx].replace(&it.value).is_some() {
            return Err(format!("{flag}: `{}` given twice", sig.args[idx].name));
        }
    }
    Ok(slots)
}

fn kind_words(kind: ArgKind) -> &'static str {
    match kind {
        ArgKind::Scalar => "a scalar (--arg)",
        ArgKind::In => "an input (--in)",
        ArgKind::Out => "an output (--out)",
    }
}

/// Binds command-line items to `sig`: reads inputs (files, values), infers scalars a
/// single input determines, checks every length, allocates outputs.
pub fn bind(sig: &KernelSig, args: &[Item], ins: &[Item], outs: &[Item]) -> Result<Bound, String> {
    let scalar_text = assign(sig, ArgKind::Scalar, args, "--arg")?;
    let in_files = assign(sig, ArgKind::In, ins, "--in")?;
    let out_files = assign(sig, ArgKind::Out, outs, "--out")?;
    let mut scalars = vec![None; sig.args.len()];
    for (i, t) in scalar_text.iter().enumerate() {
        if let Some(t) = t {
            let a = &sig.args[i];
            scalars[i] = Some(parse_scalar(a.ty, t).map_err(|e| format!("--arg {}: {e}", a.name))?);
        }
    }
    let mut inputs: Vec<Option<AlignedBuf>> = (0..sig.args.len()).map(|_| None).collect();
    let mut from: Vec<Option<String>> = vec![None; sig.args.len()];
    let mut stdin_taken = false;
    for (i, f) in in_files.iter().enumerate() {
        let a = &sig.args[i];
        if a.kind != ArgKind::In {
            continue;
        }
        let Some(f) = f else {
            return Err(format!(
                "missing input `{}` of {} (give --in {}=@FILE or --in {}=VALUES)",
                a.name,
                sig.render(),
                a.name,
                a.name
            ));
        };
        let input = data::read_input(a.ty, f, &mut stdin_taken)
            .map_err(|e| format!("--in {}: {e}", a.name))?;
        inputs[i] = Some(input.buf);
        from[i] = input.from;
    }
    infer(sig, &mut scalars, &inputs)?;
    for (i, a) in sig.args.iter().enumerate() {
        if a.kind == ArgKind::Scalar && scalars[i].is_none() {
            return Err(format!(
                "missing value for `{}` (give --arg {}=VALUE)",
                a.name, a.name
            ));
        }
    }
    let known: Vec<u64> = scalars.iter().map(|s| s.unwrap_or(0)).collect();
    let mut outputs = Vec::with_capacity(sig.args.len());
    for (i, a) in sig.args.iter().enumerate() {
        if a.kind == ArgKind::Scalar {
            outputs.push(None);
            continue;
        }
        let want = sig
            .buffer_bytes(i, &known)
            .ok_or_else(|| format!("the size of `{}` overflows with these values", a.name))?;
        let want =
            usize::try_from(want).map_err(|_| format!("`{}` would need {want} bytes", a.name))?;
        if a.kind == ArgKind::In {
            let have = inputs[i].as_ref().map_or(0, AlignedBuf::len);
            if have != want {
                let what = match &from[i] {
                    Some(f) => format!(
                        "{} {} elements ({have} bytes, from {f})",
                        have / a.ty.size(),
                        a.ty.name()
                    ),
                    None => format!("{have} bytes"),
                };
                return Err(format!(
                    "input `{}` has {what} but {} needs {want} bytes for it ({})",
                    a.name,
                    sig.name,
                    size_formula(sig, i, &known)
                ));
            }
            outputs.push(None);
        } else {
            let sink = out_files[i]
                .map(Sink::parse)
                .transpose()
                .map_err(|e| format!("--out {}: {e}", a.name))?;
            outputs.push(Some((AlignedBuf::zeroed(want), sink)));
        }
    }
    Ok(Bound {
        scalars,
        inputs,
        outputs,
    })
}

/// "n*4 with n=1000".
fn size_formula(sig: &KernelSig, i: usize, known: &[u64]) -> String {
    let a = &sig.args[i];
    let mut parts = vec![];
    if a.count != 1 {
        parts.push(a.count.to_string());
    }
    let mut values = vec![];
    for d in a.dims.iter().flatten() {
        let s = &sig.args[usize::from(*d)];
        parts.push(s.name.clone());
        values.push(format!("{}={}", s.name, known[usize::from(*d)]));
    }
    parts.push(a.ty.size().to_string());
    format!("{} bytes with {}", parts.join("*"), values.join(", "))
}

/// Fills scalars that an input's length determines on its own.
fn infer(
    sig: &KernelSig,
    scalars: &mut [Option<u64>],
    inputs: &[Option<AlignedBuf>],
) -> Result<(), String> {
    loop {
        let mut progress = false;
        for (i, a) in sig.args.iter().enumerate() {
            let Some(buf) = inputs[i].as_ref() else {
                continue;
            };
            let unknown: Vec<usize> = a
                .dims
                .iter()
                .flatten()
                .map(|d| usize::from(*d))
                .filter(|&d| scalars[d].is_none())
                .collect();
            let [d] = unknown[..] else { continue };
            let mut per = u64::from(a.count) * a.ty.size() as u64;
            for k in a
                .dims
                .iter()
                .flatten()
                .map(|x| usize::from(*x))
                .filter(|&k| k != d)
            {
                per = per.saturating_mul(scalars[k].unwrap_or(0));
            }
            let len = buf.len() as u64;
            if per == 0 || len % per != 0 {
                return Err(format!(
                    "input `{}` has {len} bytes, not a multiple of {per}: cannot work out `{}` (give --arg {}=VALUE)",
                    a.name, sig.args[d].name, sig.args[d].name
                ));
            }
            scalars[d] = Some(len / per);
            progress = true;
        }
        if !progress {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfpga_proto::{ArgSig, KernelSig};

    fn vadd() -> KernelSig {
        let buf = |name: &str, kind| ArgSig {
            name: name.into(),
            kind,
            ty: ElemType::U32,
            dims: [Some(3), None],
            count: 1,
        };
        KernelSig {
            name: "vadd_u32".into(),
            doc: String::new(),
            args: vec![
                buf("a", ArgKind::In),
                buf("b", ArgKind::In),
                buf("c", ArgKind::Out),
                ArgSig {
                    name: "n".into(),
                    kind: ArgKind::Scalar,
                    ty: ElemType::U32,
                    dims: [None, None],
                    count: 0,
                },
            ],
        }
    }

    fn item(s: &str) -> Item {
        s.parse().unwrap()
    }

    #[test]
    fn scalars_parse_by_type() {
        assert_eq!(parse_scalar(ElemType::U32, "0x10"), Ok(16));
        assert_eq!(parse_scalar(ElemType::U32, "4K"), Ok(4096));
        assert_eq!(parse_scalar(ElemType::I16, "-1"), Ok(0xffff));
        assert_eq!(
            parse_scalar(ElemType::F32, "1.5"),
            Ok(u64::from(1.5f32.to_bits()))
        );
        assert!(parse_scalar(ElemType::U32, "4G")
            .unwrap_err()
            .contains("out of range"));
        assert!(parse_scalar(ElemType::U32, "-1").is_err());
        assert!(parse_scalar(ElemType::U8, "x")
            .unwrap_err()
            .contains("not a valid u8"));
    }

    #[test]
    fn infers_sizes_and_explains_mismatches() {
        let dir = tempfile::tempdir().unwrap();
        let f = |name: &str, len: usize| {
            let p = dir.path().join(name);
            std::fs::write(&p, vec![1u8; len]).unwrap();
            p.display().to_string()
        };
        let (a, b, short) = (f("a", 40), f("b", 40), f("s", 36));
        let sig = vadd();
        let bound = bind(&sig, &[], &[item(&a), item(&b)], &[]).unwrap();
        assert_eq!(bound.scalars[3], Some(10), "n inferred from a's 40 bytes");
        assert_eq!(bound.outputs[2].as_ref().unwrap().0.len(), 40);

        let e = bind(&sig, &[], &[item(&a), item(&short)], &[])
            .err()
            .unwrap();
        assert!(
            e.contains("input `b` has 36 bytes but vadd_u32 needs 40 bytes"),
            "{e}"
        );
        let e = bind(&sig, &[item("n=11")], &[item(&a), item(&b)], &[])
            .err()
            .unwrap();
        assert!(e.contains("n*4 bytes with n=11"), "{e}");
        let e = bind(&sig, &[], &[item(&a)], &[]).err().unwrap();
        assert!(e.contains("missing input `b`"), "{e}");
        let e = bind(&sig, &[item("m=3")], &[item(&a), item(&b)], &[])
            .err()
            .unwrap();
        assert!(
            e.contains("`m` is not a scalar (--arg) argument of vadd_u32"),
            "{e}"
        );
        let e = bind(&sig, &[], &[item(&a), item(&b), item(&b)], &[])
            .err()
            .unwrap();
        assert!(e.contains("too many --in values"), "{e}");
        let odd = f("odd", 41);
        let e = bind(&sig, &[], &[item(&odd), item(&b)], &[]).err().unwrap();
        assert!(e.contains("not a multiple of 4"), "{e}");
    }
}
