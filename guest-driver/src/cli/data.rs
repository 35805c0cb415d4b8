//! Where a buffer's elements come from (`--in`) and go to (`--out`): raw little-endian
//! files, `.npy` files, standard input, inline lists.
//!
//! `--in` takes `@FILE` (a file: `.npy` by its name, else raw), `@-` (raw bytes from
//! standard input), a list of values (`1,2,3`, `[1, 2, 3]`, `[]`), or a bare `FILE`
//! (the form from before `@` existed, still read as a file unless the text is a list
//! of values). `--out` takes `@FILE` or `FILE`, `.npy` by its name, else raw.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use vfpga::AlignedBuf;
use vfpga_proto::ElemType;

use crate::cli::{npy, values};

/// An input buffer and where it came from, for messages.
pub struct Input {
    /// The elements.
    pub buf: AlignedBuf,
    /// "3 values", "x.npy of shape (2, 3)"; `None` for raw bytes, whose length is all
    /// there is to say.
    pub from: Option<String>,
}

/// What an `--in` value names.
#[derive(Debug, PartialEq, Eq)]
enum Source<'a> {
    Stdin,
    File(&'a str),
    Values(&'a str),
}

/// Reads what `--in` names into a buffer of `ty` elements. `stdin_taken` is set by the
/// first `@-` and refuses a second one.
pub fn read_input(ty: ElemType, text: &str, stdin_taken: &mut bool) -> Result<Input, String> {
    match source(ty, text, |p| Path::new(p).exists())? {
        Source::Stdin => {
            if std::mem::replace(stdin_taken, true) {
                return Err("only one --in can read standard input (@-)".into());
            }
            let mut data = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut data)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            Ok(Input {
                buf: AlignedBuf::from_slice(&data),
                from: None,
            })
        }
        Source::Values(v) => {
            let data = values::parse_list(ty, v)?;
            let n = data.len() / ty.size();
            Ok(Input {
                buf: AlignedBuf::from_slice(&data),
                from: Some(format!("{n} value{}", if n == 1 { "" } else { "s" })),
            })
        }
        Source::File(f) => {
            let data = std::fs::read(f).map_err(|e| {
                // A mistyped list without @ looks like a missing file: say both.
                match values::parse_list(ty, text) {
                    Err(why)
                        if e.kind() == std::io::ErrorKind::NotFound
                            && !text.starts_with('@')
                            && text.contains(',') =>
                    {
                        format!(
                            "`{text}` is neither a file nor a list of {} values ({why})",
                            ty.name()
                        )
                    }
                    _ => format!("cannot read {f}: {e}"),
                }
            })?;
            if !is_npy(Path::new(f)) {
                return Ok(Input {
                    buf: AlignedBuf::from_slice(&data),
                    from: None,
                });
            }
            let a = npy::parse(&data, ty).map_err(|e| format!("{f}: {e}"))?;
            Ok(Input {
                buf: AlignedBuf::from_slice(a.data),
                from: Some(format!("{f} of shape {}", a.shape_text())),
            })
        }
    }
}

/// What `text` names; `exists` says whether a file of that name exists.
fn source(ty: ElemType, text: &str, exists: impl Fn(&str) -> bool) -> Result<Source<'_>, String> {
    if let Some(p) = text.strip_prefix('@') {
        return match p {
            "" => Err("`@` needs a file name after it (or @- for standard input)".into()),
            "-" => Ok(Source::Stdin),
            p => Ok(Source::File(p)),
        };
    }
    let t = text.trim_start();
    if t.is_empty() || t.starts_with('[') {
        return Ok(Source::Values(text));
    }
    if values::is_list(ty, text) {
        if exists(text) {
            return Err(format!(
                "`{text}` is both a file and a list of {} values: \
                 write @{text} for the file, [{text}] for the values",
                ty.name()
            ));
        }
        return Ok(Source::Values(text));
    }
    Ok(Source::File(text))
}

/// True if `path` names a `.npy` file (by its extension, in any case).
fn is_npy(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

/// Where an `--out` goes: a file, written raw or as `.npy` by its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sink {
    /// The file.
    pub path: PathBuf,
    /// Written as `.npy` (one-dimensional) rather than raw.
    pub npy: bool,
}

impl Sink {
    /// The file `--out` names: `@FILE` or `FILE`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let p = text.strip_prefix('@').unwrap_or(text);
        match p {
            "" => Err("--out needs a file name".into()),
            "-" => Err(
                "--out cannot write to standard output: leave --out off and \
                 the output is printed (--format values, hex or raw)"
                    .into(),
            ),
            p => Ok(Self {
                path: PathBuf::from(p),
                npy: is_npy(Path::new(p)),
            }),
        }
    }

    /// Writes `data`, elements of `ty`.
    pub fn write(&self, ty: ElemType, data: &[u8]) -> Result<(), String> {
        let fail = |e: std::io::Error| format!("cannot write {}: {e}", self.path.display());
        let mut f = std::fs::File::create(&self.path).map_err(fail)?;
        if self.npy {
            f.write_all(&npy::header(ty, (data.len() / ty.size()) as u64))
                .map_err(fail)?;
        }
        f.write_all(data).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(ty: ElemType, text: &str) -> Result<Source<'_>, String> {
        source(ty, text, |_| false)
    }

    #[test]
    fn at_means_a_file_and_lists_are_values() {
        let ty = ElemType::U32;
        assert_eq!(src(ty, "@a.bin"), Ok(Source::File("a.bin")));
        assert_eq!(src(ty, "@1,2"), Ok(Source::File("1,2")));
        assert_eq!(src(ty, "@-"), Ok(Source::Stdin));
        assert!(src(ty, "@").unwrap_err().contains("needs a file name"));
        assert_eq!(src(ty, "1,2,3"), Ok(Source::Values("1,2,3")));
        assert_eq!(src(ty, "[1, 2]"), Ok(Source::Values("[1, 2]")));
        assert_eq!(src(ty, "[]"), Ok(Source::Values("[]")));
        assert_eq!(src(ty, ""), Ok(Source::Values("")));
        // The old form: a bare file name.
        assert_eq!(src(ty, "in/a_u32.bin"), Ok(Source::File("in/a_u32.bin")));
        assert_eq!(src(ty, "x.npy"), Ok(Source::File("x.npy")));
    }

    #[test]
    fn a_name_that_is_both_a_file_and_values_is_refused() {
        let e = source(ElemType::U32, "7", |p| p == "7").unwrap_err();
        assert!(
            e.contains(
                "both a file and a list of u32 values: write @7 for the file, [7] for the values"
            ),
            "{e}"
        );
        // Not a list of this type: the file, as before.
        assert_eq!(
            source(ElemType::U8, "300", |_| true),
            Ok(Source::File("300"))
        );
    }

    #[test]
    fn inputs_read_raw_npy_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("a.bin");
        std::fs::write(&raw, [1, 0, 2, 0]).unwrap();
        let mut taken = false;
        let r = read_input(ElemType::I16, &format!("@{}", raw.display()), &mut taken).unwrap();
        assert_eq!((r.buf.as_slice(), r.from), (&[1u8, 0, 2, 0][..], None));

        let npy = dir.path().join("a.NPY");
        let mut f = npy::header(ElemType::I16, 2);
        f.extend_from_slice(&[5, 0, 6, 0]);
        std::fs::write(&npy, &f).unwrap();
        let r = read_input(ElemType::I16, &npy.display().to_string(), &mut taken).unwrap();
        assert_eq!(r.buf.as_slice(), &[5, 0, 6, 0]);
        assert_eq!(r.from.unwrap(), format!("{} of shape (2,)", npy.display()));
        let e = read_input(ElemType::U32, &npy.display().to_string(), &mut taken)
            .err()
            .unwrap();
        assert!(
            e.contains("holds dtype '<i2' (int16) but the argument is u32"),
            "{e}"
        );
        // A raw file misnamed .npy.
        std::fs::write(&npy, [1, 2, 3, 4]).unwrap();
        let e = read_input(ElemType::I16, &npy.display().to_string(), &mut taken)
            .err()
            .unwrap();
        assert!(
            e.ends_with("a.NPY: not a .npy file (it does not start with \\x93NUMPY)"),
            "{e}"
        );

        let r = read_input(ElemType::I16, "-1, 2", &mut taken).unwrap();
        assert_eq!(r.buf.as_slice(), &[0xff, 0xff, 2, 0]);
        assert_eq!(r.from.as_deref(), Some("2 values"));
        let e = read_input(ElemType::I16, "1,2,x", &mut taken)
            .err()
            .unwrap();
        assert_eq!(
            e,
            "`1,2,x` is neither a file nor a list of i16 values (element 3: `x` is not a valid i16 value)"
        );
        let e = read_input(ElemType::I16, "no/such.bin", &mut taken)
            .err()
            .unwrap();
        assert!(e.starts_with("cannot read no/such.bin: "), "{e}");
        assert!(!taken, "no input read standard input");
    }

    #[test]
    fn outputs_go_raw_or_npy_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let at = |n: &str| format!("@{}", dir.path().join(n).display());
        let s = Sink::parse(&at("c.npy")).unwrap();
        assert!(s.npy);
        s.write(ElemType::U32, &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0])
            .unwrap();
        let got = std::fs::read(&s.path).unwrap();
        let a = npy::parse(&got, ElemType::U32).unwrap();
        assert_eq!((a.shape, a.data.len()), (vec![3], 12));
        let s = Sink::parse(&dir.path().join("c.bin").display().to_string()).unwrap();
        assert!(!s.npy);
        s.write(ElemType::U32, &[9, 0, 0, 0]).unwrap();
        assert_eq!(std::fs::read(&s.path).unwrap(), [9, 0, 0, 0]);
        assert!(Sink::parse("@-").unwrap_err().contains("--format"));
        assert!(Sink::parse("@").is_err());
        let e = Sink::parse("/nonexistent/dir/c.bin")
            .unwrap()
            .write(ElemType::U8, &[1])
            .unwrap_err();
        assert!(
            e.starts_with("cannot write /nonexistent/dir/c.bin: "),
            "{e}"
        );
        Sink::parse("/dev/null")
            .unwrap()
            .write(ElemType::U8, &[1])
            .unwrap();
    }
}
