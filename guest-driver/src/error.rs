//! Errors with messages a user can act on.

use std::io;
use std::path::PathBuf;

use vfpga_proto::Status;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device node could not be opened.
    #[error("cannot open {}: {}", path.display(), open_hint(source))]
    Open {
        /// The node.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// vfpgad could not be reached on a stream endpoint.
    #[error("cannot connect to {endpoint}: {}", connect_hint(endpoint, source))]
    Connect {
        /// The endpoint (`vsock://2:7000`, ...).
        endpoint: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The connection to vfpgad failed in the middle of a request (the request's
    /// outcome is unknown; the connection is not used again).
    #[error("{op}: the connection to vfpgad failed: {source}")]
    Link {
        /// What was being done.
        op: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The driver refused or could not complete the request.
    #[error("{op}: {}", io_hint(source))]
    Io {
        /// What was being done.
        op: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// Same, with a longer description of what was being done.
    #[error("{op}: {}", io_hint(source))]
    IoDuring {
        /// What was being done.
        op: String,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// The device answered with an error status.
    #[error("{op}: {}{}", status.describe(), if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    Device {
        /// What was being done.
        op: String,
        /// The status.
        status: Status,
        /// Which argument, or more context.
        detail: String,
    },
    /// No kernel of that name.
    #[error("no kernel `{name}` on this device; available: {}", available.join(", "))]
    UnknownKernel {
        /// The name asked for.
        name: String,
        /// The names the device offers.
        available: Vec<String>,
    },
    /// The caller's request cannot be expressed (bad name, too many arguments...).
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Replaces the operation description (for context such as the kernel name).
    pub fn with_op(self, op: String) -> Self {
        match self {
            Error::Device { status, detail, .. } => Error::Device { op, status, detail },
            Error::Io { source, .. } | Error::IoDuring { source, .. } => {
                Error::IoDuring { op, source }
            }
            other => other,
        }
    }

    /// The device status, if the device answered.
    pub fn status(&self) -> Option<Status> {
        match self {
            Error::Device { status, .. } => Some(*status),
            Error::UnknownKernel { .. } => Some(Status::UnknownKernel),
            _ => None,
        }
    }
}

fn open_hint(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => {
            "no such device node (is the virtio_vfpga module loaded and a vfpga device attached?)"
                .into()
        }
        io::ErrorKind::PermissionDenied => {
            "permission denied (the node is mode 0660: run as root or join its group)".into()
        }
        _ => e.to_string(),
    }
}

fn connect_hint(endpoint: &str, e: &io::Error) -> String {
    let what = match e.raw_os_error() {
        Some(libc::ECONNREFUSED) | Some(libc::ENOENT) => {
            "nothing listens there (is vfpgad running with a listen entry for this guest?)"
        }
        Some(libc::ENODEV) | Some(libc::EAFNOSUPPORT) if endpoint.starts_with("vsock:") => {
            "no vsock transport in this guest (load vmw_vsock_virtio_transport; does the VM have a vsock device?)"
        }
        Some(libc::ETIMEDOUT) => "no answer (is the host reachable, and does vfpgad listen there?)",
        Some(libc::EACCES) | Some(libc::EPERM) => "permission denied",
        _ => "",
    };
    if what.is_empty() {
        e.to_string()
    } else {
        format!("{what} ({e})")
    }
}

fn io_hint(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENODEV) => "the device was removed or reset".into(),
        Some(libc::ENOTTY) => "not a vfpga device (unknown ioctl)".into(),
        Some(libc::EFAULT) => "a buffer address is not valid in this process".into(),
        Some(libc::EINVAL) => "the driver refused the request as malformed".into(),
        Some(libc::ENOMEM) => "cannot pin the buffers: more than this process may lock in memory (ulimit -l, RLIMIT_MEMLOCK), or the driver is out of memory".into(),
        Some(libc::EIO) => "the device broke the protocol (see the kernel log)".into(),
        Some(libc::ENOENT) => "no registered buffer with that id in this open file".into(),
        Some(libc::EACCES) => "a buffer registered read-only was given as an output".into(),
        Some(libc::EOPNOTSUPP) => "only anonymous, shared-memory (shmem) or hugetlbfs memory can be registered, not a file's mapping".into(),
        Some(libc::ENOSPC) => "every registration slot of this open file is taken (unregister a buffer, or load the module with a larger max_registered)".into(),
        Some(libc::EAGAIN) => "the guest suspended while the request ran and the device was reset: run it again (sessions opened before need opening again)".into(),
        _ => e.to_string(),
    }
}
