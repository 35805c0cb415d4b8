//! A writer of "newc" cpio archives (magic `070701`), the format the Linux kernel
//! unpacks as an initramfs. Entries are owned by root, dated 0 (reproducible), and
//! written in the order given; parents must come before their children.

use crate::error::Error;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// An archive being written.
#[derive(Debug, Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// A folder.
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<(), Error> {
        self.entry(path, S_IFDIR | (perm & 0o7777), &[], (0, 0))
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<(), Error> {
        self.entry(path, S_IFREG | (perm & 0o7777), data, (0, 0))
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), Error> {
        self.entry(path, S_IFLNK | 0o777, target.as_bytes(), (0, 0))
    }

    /// A character device node (no privileges needed to put one in an archive).
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<(), Error> {
        self.entry(path, S_IFCHR | (perm & 0o7777), &[], (major, minor))
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Result<Vec<u8>, Error> {
        self.ino = 0;
        self.header("TRAILER!!!", 0, 0, (0, 0), 1)?;
        Ok(self.buf)
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8], rdev: (u32, u32)) -> Result<(), Error> {
        let name = path.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') || name.split('/').any(|c| c == "..") {
            return Err(Error::invalid(format!("initramfs: bad path {path:?}")));
        }
        let size = u32::try_from(data.len()).map_err(|_| {
            Error::invalid(format!(
                "initramfs: {path} has {} bytes; newc cpio stores at most 4 GiB per file",
                data.len()
            ))
        })?;
        self.ino = self.ino.wrapping_add(1);
        let nlink = if mode & S_IFDIR == S_IFDIR { 2 } else { 1 };
        self.header(name, mode, size, rdev, nlink)?;
        self.buf.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn header(
        &mut self,
        name: &str,
        mode: u32,
        size: u32,
        rdev: (u32, u32),
        nlink: u32,
    ) -> Result<(), Error> {
        let namesize = u32::try_from(name.len() + 1)
            .map_err(|_| Error::invalid("initramfs: path too long".to_owned()))?;
        let fields = [
            self.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        Ok(())
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }
}

/// One entry read back from an archive (for tests and `--check` listings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive.
    pub name: String,
    /// Mode with type bits.
    pub mode: u32,
    /// Contents (the target for a symlink).
    pub data: Vec<u8>,
    /// Device major and minor.
    pub rdev: (u32, u32),
}

/// Reads a newc archive (up to its trailer).
pub fn read(mut d: &[u8]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    let mut off = 0usize;
    let hex = |s: &[u8]| -> Result<usize, String> {
        let t = std::str::from_utf8(s).map_err(|e| e.to_string())?;
        usize::from_str_radix(t, 16).map_err(|e| format!("{t:?}: {e}"))
    };
    let align = |n: usize| (n + 3) & !3;
    loop {
        if d.len() < 110 || &d[..6] != b"070701" {
            return Err(format!("no newc header at offset {off}"));
        }
        let field = |i: usize| hex(&d[6 + i * 8..14 + i * 8]);
        let mode = u32::try_from(field(1)?).map_err(|e| e.to_string())?;
        let size = field(6)?;
        let rdev = (
            u32::try_from(field(9)?).map_err(|e| e.to_string())?,
            u32::try_from(field(10)?).map_err(|e| e.to_string())?,
        );
        let namesize = field(11)?;
        let name_end = 110 + namesize;
        let name = String::from_utf8(d.get(110..name_end - 1).ok_or("short name")?.to_vec())
            .map_err(|e| e.to_string())?;
        let data_start = align(name_end);
        let data_end = data_start + size;
        let data = d.get(data_start..data_end).ok_or("short data")?.to_vec();
        let next = align(data_end).min(d.len());
        off += next;
        d = &d[next..];
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        out.push(Entry {
            name,
            mode,
            data,
            rdev,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut c = Cpio::new();
        c.dir("/etc", 0o755).unwrap();
        c.file("etc/hello", 0o644, b"hello").unwrap();
        c.symlink("bin/sh", "/bin/busybox").unwrap();
        c.char_dev("dev/console", 0o600, 5, 1).unwrap();
        let bytes = c.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let e = read(&bytes).unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].name, "etc");
        assert_eq!(e[0].mode, 0o040_755);
        assert_eq!(e[1].data, b"hello");
        assert_eq!(e[1].mode, 0o100_644);
        assert_eq!(e[2].data, b"/bin/busybox");
        assert_eq!(e[2].mode & 0o170_000, 0o120_000);
        assert_eq!(e[3].rdev, (5, 1));
    }

    #[test]
    fn the_system_cpio_reads_it() {
        // GNU or busybox cpio, when the machine has one: an independent reader.
        let mut c = Cpio::new();
        c.dir("d", 0o755).unwrap();
        c.file("d/f", 0o600, b"abc").unwrap();
        let bytes = c.finish().unwrap();
        let out = crate::probe::filter("cpio", &["-t", "--quiet"], &bytes, "-t");
        match out {
            Ok(list) => assert_eq!(String::from_utf8_lossy(&list), "d\nd/f\n"),
            Err(e) if e.to_string().contains("not installed") => {}
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn bad_paths_are_refused() {
        let mut c = Cpio::new();
        assert!(c.file("../x", 0o644, b"").is_err());
        assert!(c.file("/", 0o644, b"").is_err());
    }
}
