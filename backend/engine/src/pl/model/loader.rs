//! The model's fpga_manager and configfs overlays.
//!
//! Xilinx's fpga_manager programs the fabric inside the write of `firmware`: the state a
//! process reads next is already the load's outcome. Plain files cannot behave so (a
//! thread watching them reacts some time later, and a loaded machine can make that
//! later than any settle window), so the model makes `firmware` and `state` named
//! pipes. Names written to `firmware` wait in the pipe, and the model answers every
//! read of `state` itself, taking in those names first: a read that follows a write of
//! `firmware` always sees that load's outcome, however the threads are scheduled.
//!
//! A pipe cannot tell its writer which reader is there: when the model finds a reader
//! right after answering one, it may be the last one still closing, so it answers
//! nothing (that reader, if new, reads an empty state and asks again) until it has seen
//! no reader at all. Configfs overlays stay plain files, watched by the same thread:
//! the engine waits for their `status` to say `applied`, which the model writes after
//! it has reset the cores.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::super::hls::{AP_CTRL, AP_IDLE};
use super::super::mmap::Mmap;
use super::Shared;

/// How often the thread looks for a reader of `state` or a new overlay.
const POLL: Duration = Duration::from_micros(300);

fn mkfifo(p: &Path) -> io::Result<()> {
    let c = CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is a NUL-terminated path that lives for the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o644) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// fpga_manager and configfs overlays.
pub(super) struct Loader {
    root: PathBuf,
    shared: Shared,
    /// The cores' register files: programming the fabric resets every core.
    cores: Vec<Mmap>,
    /// The read end of `firmware`, held open (read and write, so writers never block
    /// and the pipe never reports an end).
    firmware: File,
    state: PathBuf,
    current: String,
}

impl Loader {
    /// Lays out `firmware` and `state` under the manager's folder `fpga`.
    pub(super) fn new(
        root: &Path,
        fpga: &Path,
        shared: Shared,
        cores: Vec<Mmap>,
    ) -> io::Result<Self> {
        let (fw, state) = (fpga.join("firmware"), fpga.join("state"));
        for p in [&fw, &state] {
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => mkfifo(p)?,
            }
        }
        let firmware = File::options()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fw)?;
        Ok(Self {
            root: root.to_owned(),
            shared,
            cores,
            firmware,
            state,
            current: "operating".into(),
        })
    }

    fn reset_cores(&self) {
        self.shared.programmed.fetch_add(1, Ordering::AcqRel);
        for r in &self.cores {
            r.write32(AP_CTRL, AP_IDLE);
        }
    }

    pub(super) fn run(mut self) {
        // Whether no reader has been seen since the last answer.
        let mut fresh = true;
        while !self.shared.stop.load(Ordering::Relaxed) {
            self.overlays();
            let reader = File::options()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.state);
            match reader {
                Ok(mut f) if fresh => {
                    self.take_loads();
                    let _ = f.write_all(format!("{}\n", self.current).as_bytes());
                    fresh = false;
                }
                // Maybe the reader just answered, still closing: close without an answer.
                Ok(_) => {}
                // ENXIO: nobody has the pipe open for reading.
                Err(_) => fresh = true,
            }
            std::thread::sleep(POLL);
        }
    }

    /// Performs the loads written to `firmware` since the last look: every write is a
    /// load request, even of the same name.
    fn take_loads(&mut self) {
        let mut raw = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match self.firmware.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break, // WouldBlock: drained
            }
        }
        let fw = String::from_utf8_lossy(&raw).trim().to_owned();
        if fw.is_empty() {
            return;
        }
        let end = if !self.root.join("lib/firmware").join(&fw).is_file() {
            self.shared.event(format!("fpga0: firmware {fw} not found"));
            "firmware request error".to_owned()
        } else {
            self.shared
                .faults()
                .fpga_state
                .unwrap_or_else(|| "operating".into())
        };
        if end == "operating" {
            let t = self.shared.program_us.load(Ordering::Relaxed);
            std::thread::sleep(Duration::from_micros(t));
            self.reset_cores();
        }
        self.shared.event(format!("fpga0: load {fw}: {end}"));
        self.current = end;
    }

    fn overlays(&self) {
        let overlays = self.root.join("sys/kernel/config/device-tree/overlays");
        for e in std::fs::read_dir(&overlays).into_iter().flatten().flatten() {
            let path = std::fs::read_to_string(e.path().join("path")).unwrap_or_default();
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            if path.trim().is_empty() || !status.trim().is_empty() {
                continue;
            }
            let ok = self.root.join("lib/firmware").join(path.trim()).is_file();
            if ok {
                self.reset_cores();
            }
            let _ = std::fs::write(
                e.path().join("status"),
                if ok { "applied\n" } else { "unapplied\n" },
            );
        }
    }
}
