//! Listening unix sockets and waiting on them: shared by the vhost-user sockets and the
//! stream listeners.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Creates the listening socket, replacing a stale socket file but never a live
/// socket or another kind of file, and gives it the configured mode and group. A
/// missing folder is created (mode 0755, as systemd's RuntimeDirectory would), so
/// `--socket vm0=/run/vfpga/vm0.sock` works on a fresh host.
pub fn bind(path: &Path, mode: Option<u32>, gid: Option<u32>) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)?;
            tracing::info!("created {} for the sockets", dir.display());
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ))
        }
        Ok(_) if UnixStream::connect(path).is_ok() => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process is serving this socket",
            ))
        }
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if mode.is_none() && gid.is_none() {
        return UnixListener::bind(path);
    }
    // Bound under a name of its own, given its group and mode, then renamed into
    // place: nobody ever finds the socket at its path with other permissions (a
    // process waiting for it to appear, QEMU among them, sees it complete).
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = path.with_file_name(format!(".{name}.{}.new", std::process::id()));
    if tmp.as_os_str().len() >= 108 {
        // No room for the longer name in a socket address: a shorter one.
        tmp = path.with_file_name(format!(".{}", std::process::id()));
    }
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    let placed = (|| {
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&tmp, None, Some(gid))?;
        }
        if let Some(mode) = mode {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        }
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

/// Waits until `fd` is readable (`true`) or the stop event fires (`false`).
pub fn wait_readable(fd: RawFd, stop: RawFd) -> io::Result<bool> {
    let mut fds = [
        libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stop,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a valid array of two pollfd structures for the whole call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[1].revents != 0 {
            return Ok(false);
        }
        if fds[0].revents != 0 {
            return Ok(true);
        }
    }
}
