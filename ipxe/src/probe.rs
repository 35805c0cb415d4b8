//! What a boot file is, from its bytes: bzImage (and its version), ELF (static or
//! not), multiboot image, compressed data; and decompression through the usual
//! programs (`gzip`, `xz`, `zstd`), which every Debian system has or can install.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::Error;

/// Compression of a file, by its magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip.
    Gzip,
    /// xz.
    Xz,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The compression of `data`, if any.
    pub fn of(data: &[u8]) -> Option<Self> {
        if data.starts_with(&[0x1f, 0x8b]) {
            Some(Self::Gzip)
        } else if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Self::Xz)
        } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Self::Zstd)
        } else {
            None
        }
    }

    fn program(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
        }
    }
}

/// Reads a file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// Runs `program args` with `input` on stdin and returns its stdout.
pub fn filter(program: &str, args: &[&str], input: &[u8], what: &str) -> Result<Vec<u8>, Error> {
    let tool = |message: String| Error::Tool {
        program: program.to_owned(),
        what: what.to_owned(),
        message,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            tool(if e.kind() == std::io::ErrorKind::NotFound {
                let package = if program == "xz" { "xz-utils" } else { program };
                format!("`{program}` is not installed (Debian package {package})")
            } else {
                e.to_string()
            })
        })?;
    let mut stdin = child.stdin.take().ok_or_else(|| tool("no stdin".into()))?;
    // Feed stdin from a thread: the child's stdout pipe must be drained meanwhile.
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().map_err(|e| tool(e.to_string()))?;
    let fed = feeder
        .join()
        .map_err(|_| tool("the input thread panicked".into()))?;
    if !out.status.success() {
        return Err(tool(format!(
            "{} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        )));
    }
    fed.map_err(|e| tool(format!("writing its input: {e}")))?;
    Ok(out.stdout)
}

/// `data` decompressed if it is gzip, xz or zstd data, else unchanged.
pub fn decompress(data: Vec<u8>, what: &Path) -> Result<Vec<u8>, Error> {
    match Compression::of(&data) {
        None => Ok(data),
        Some(c) => filter(
            c.program(),
            &["-dc"],
            &data,
            &format!("-dc {}", what.display()),
        ),
    }
}

/// The x86 Linux boot protocol header ("HdrS" at 0x202) of a bzImage.
pub fn is_bzimage(data: &[u8]) -> bool {
    data.get(0x202..0x206) == Some(b"HdrS")
}

/// The kernel release of a bzImage (`6.1.0-48-amd64`), from the version string the
/// boot header points to (`kernel_version` at 0x20e, offset from 0x200).
pub fn bzimage_release(data: &[u8]) -> Option<String> {
    let ptr = u16::from_le_bytes(data.get(0x20e..0x210)?.try_into().ok()?);
    if ptr == 0 {
        return None;
    }
    let start = usize::from(ptr) + 0x200;
    let rest = data.get(start..)?;
    let end = rest.iter().take(512).position(|&b| b == 0)?;
    let s = std::str::from_utf8(&rest[..end]).ok()?;
    s.split_whitespace().next().map(str::to_owned)
}

/// An ELF file.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}

fn le_u16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?))
}
fn le_u32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}
fn le_u64(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(at..at + 8)?.try_into().ok()?))
}

/// Whether an ELF (little-endian, 32 or 64 bit) asks for a program interpreter, i.e.
/// is dynamically linked. `None` when the headers cannot be read.
pub fn elf_has_interpreter(data: &[u8]) -> Option<bool> {
    if !is_elf(data) || data.get(5) != Some(&1) {
        return None;
    }
    let (phoff, entsize, num) = match data.get(4)? {
        1 => (
            usize::try_from(le_u32(data, 0x1c)?).ok()?,
            usize::from(le_u16(data, 0x2a)?),
            usize::from(le_u16(data, 0x2c)?),
        ),
        2 => (
            usize::try_from(le_u64(data, 0x20)?).ok()?,
            usize::from(le_u16(data, 0x36)?),
            usize::from(le_u16(data, 0x38)?),
        ),
        _ => return None,
    };
    for i in 0..num {
        let at = phoff.checked_add(i.checked_mul(entsize)?)?;
        if le_u32(data, at)? == 3 {
            return Some(true); // PT_INTERP
        }
    }
    Some(false)
}

/// A multiboot (v1) header in the first 8 KiB, as iPXE and QEMU look for it.
pub fn has_multiboot_header(data: &[u8]) -> bool {
    let end = data.len().min(8192);
    (0..end.saturating_sub(11)).step_by(4).any(|at| {
        let (Some(magic), Some(flags), Some(sum)) =
            (le_u32(data, at), le_u32(data, at + 4), le_u32(data, at + 8))
        else {
            return false;
        };
        magic == 0x1bad_b002 && magic.wrapping_add(flags).wrapping_add(sum) == 0
    })
}

#[cfg(test)]
pub(crate) mod fake {
    //! Minimal files with the headers the probes look for.

    /// A bzImage-like file for `release`.
    pub fn bzimage(release: &str) -> Vec<u8> {
        let mut d = vec![0u8; 0x400];
        d[0x202..0x206].copy_from_slice(b"HdrS");
        d[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        let v = format!("{release} (builder@example) #1 SMP\0");
        d[0x300..0x300 + v.len()].copy_from_slice(v.as_bytes());
        d
    }

    /// A 64-bit ELF with one program header, PT_INTERP or PT_LOAD.
    pub fn elf64(interp: bool) -> Vec<u8> {
        let mut d = vec![0u8; 0x40 + 0x38];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        d[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        d[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        d[0x40..0x44].copy_from_slice(&(if interp { 3u32 } else { 1 }).to_le_bytes());
        d
    }

    /// A file with a multiboot header at 0x1000.
    pub fn multiboot() -> Vec<u8> {
        let mut d = vec![0u8; 0x2000];
        let magic = 0x1bad_b002u32;
        let flags = 0x0001_0003u32;
        let sum = 0u32.wrapping_sub(magic).wrapping_sub(flags);
        d[0x1000..0x1004].copy_from_slice(&magic.to_le_bytes());
        d[0x1004..0x1008].copy_from_slice(&flags.to_le_bytes());
        d[0x1008..0x100c].copy_from_slice(&sum.to_le_bytes());
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bzimage_and_its_release() {
        let k = fake::bzimage("6.1.0-48-amd64");
        assert!(is_bzimage(&k));
        assert_eq!(bzimage_release(&k).as_deref(), Some("6.1.0-48-amd64"));
        assert!(!is_bzimage(b"short"));
        assert_eq!(bzimage_release(&[0u8; 0x400]), None);
    }

    #[test]
    fn static_or_dynamic_elf() {
        assert_eq!(elf_has_interpreter(&fake::elf64(true)), Some(true));
        assert_eq!(elf_has_interpreter(&fake::elf64(false)), Some(false));
        assert_eq!(elf_has_interpreter(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn multiboot_header_found_and_checked() {
        let mut d = fake::multiboot();
        assert!(has_multiboot_header(&d));
        d[0x1008] ^= 1; // bad checksum
        assert!(!has_multiboot_header(&d));
        assert!(!has_multiboot_header(&[0u8; 100]));
    }

    #[test]
    fn gzip_round_trip_through_the_program() {
        let data = b"hello multiboot".repeat(100);
        let z = filter("gzip", &["-n", "-c"], &data, "test").unwrap();
        assert_eq!(Compression::of(&z), Some(Compression::Gzip));
        assert_eq!(decompress(z, Path::new("x.gz")).unwrap(), data);
        assert_eq!(decompress(data.clone(), Path::new("x")).unwrap(), data);
    }

    #[test]
    fn a_failing_tool_says_so() {
        let e = decompress(
            vec![0x1f, 0x8b, 0, 0, 1, 2, 3],
            Path::new("/boot/broken.gz"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("gzip -dc /boot/broken.gz: "), "{e}");
        let e = filter("no-such-program-vfpga", &[], b"", "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not installed"), "{e}");
    }
}
