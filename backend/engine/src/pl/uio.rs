//! UIO: an HLS core's register window (`/dev/uioN` mapped at map 0) and its interrupt
//! line (blocking read on the node; writing 1 re-enables it).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::mmap::Mmap;
use super::sysfs::{read, Root};
use crate::EngineError;

/// The interrupt channel: the UIO node itself on a board. Against the register-level
/// model, whose register "device" is a plain file that cannot block, a unix socket
/// beside it (`uioN.irq`) carries the same enable-write / count-read protocol.
#[derive(Debug)]
enum Irq {
    Node(File),
    Model(UnixStream),
}

impl Irq {
    fn fd(&self) -> RawFd {
        match self {
            Irq::Node(f) => f.as_raw_fd(),
            Irq::Model(s) => s.as_raw_fd(),
        }
    }
}

/// An opened UIO device.
#[derive(Debug)]
pub struct Uio {
    /// `N` of `uioN`.
    pub index: u32,
    /// Register window (map 0).
    pub regs: Mmap,
    irq: Option<Irq>,
}

impl Uio {
    /// Finds the UIO device whose sysfs `name` is `name` and opens it.
    pub fn find(root: &Root, name: &str, with_irq: bool) -> Result<Self, EngineError> {
        let class = root.path("sys/class/uio");
        let entries = std::fs::read_dir(&class).map_err(|e| {
            EngineError::io(
                format!("listing {} (is the UIO driver loaded?)", class.display()),
                e,
            )
        })?;
        let mut seen = Vec::new();
        for e in entries.flatten() {
            let file = e.file_name();
            let Some(index) = file
                .to_str()
                .and_then(|s| s.strip_prefix("uio"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let dev_name = read(&e.path().join("name"))?;
            if dev_name != name {
                seen.push(dev_name);
                continue;
            }
            let size = root.read_u64(&format!("sys/class/uio/uio{index}/maps/map0/size"))?;
            let size = usize::try_from(size).map_err(|_| {
                EngineError::Failed(format!("uio{index}: map size {size} too large"))
            })?;
            // Map N is at offset N * page size; the registers are map 0.
            let regs = Mmap::open(&root.path(&format!("dev/uio{index}")), size, 0)?;
            let irq = if with_irq {
                Some(Self::open_irq(root, index)?)
            } else {
                None
            };
            return Ok(Self { index, regs, irq });
        }
        Err(EngineError::Failed(format!(
            "no UIO device named {name:?} under {} (found: {})",
            class.display(),
            if seen.is_empty() {
                "none".to_owned()
            } else {
                seen.join(", ")
            }
        )))
    }

    fn open_irq(root: &Root, index: u32) -> Result<Irq, EngineError> {
        let node = root.path(&format!("dev/uio{index}"));
        let meta = std::fs::metadata(&node)
            .map_err(|e| EngineError::io(format!("stat {}", node.display()), e))?;
        if meta.file_type().is_char_device() {
            let f = File::options()
                .read(true)
                .write(true)
                .open(&node)
                .map_err(|e| EngineError::io(format!("opening {}", node.display()), e))?;
            return Ok(Irq::Node(f));
        }
        let sock = root.path(&format!("dev/uio{index}.irq"));
        UnixStream::connect(&sock).map(Irq::Model).map_err(|e| {
            EngineError::io(
                format!(
                    "{} is not a device and {} does not answer",
                    node.display(),
                    sock.display()
                ),
                e,
            )
        })
    }

    /// Re-enables the interrupt (UIO: write a 32-bit 1).
    pub fn enable_irq(&mut self) -> Result<(), EngineError> {
        let one = 1u32.to_ne_bytes();
        let r = match &mut self.irq {
            Some(Irq::Node(f)) => f.write_all(&one),
            Some(Irq::Model(s)) => s.write_all(&one),
            None => return Ok(()),
        };
        r.map_err(|e| EngineError::io(format!("enabling the interrupt of uio{}", self.index), e))
    }

    /// Waits up to `timeout` for an interrupt; `false` on timeout.
    pub fn wait_irq(&mut self, timeout: Duration) -> Result<bool, EngineError> {
        let Some(irq) = &mut self.irq else {
            return Err(EngineError::Failed(format!(
                "uio{} was opened without its interrupt",
                self.index
            )));
        };
        let mut pfd = libc::pollfd {
            fd: irq.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        loop {
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(EngineError::io(format!("waiting for uio{}", self.index), e));
            }
            if n == 0 {
                return Ok(false);
            }
            break;
        }
        let mut count = [0u8; 4];
        let r = match irq {
            Irq::Node(f) => f.read_exact(&mut count),
            Irq::Model(s) => s.read_exact(&mut count),
        };
        r.map_err(|e| {
            EngineError::io(
                format!("reading the interrupt count of uio{}", self.index),
                e,
            )
        })?;
        Ok(true)
    }
}
