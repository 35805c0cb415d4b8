//! Writing to standard output and error like a Unix filter: a reader that goes away
//! (`vfpga kernels | head -n1`) ends the process quietly by SIGPIPE, as it ends `cat`
//! or `vfpga-vhu-demo`, instead of a panic ("failed printing to stdout") or an error.
//!
//! SIGPIPE itself stays ignored while vfpga runs (Rust's default), so that a vfpgad that
//! closes a unix or vsock connection is an error the guest library handles (it
//! reconnects), not a signal that kills the CLI; only a write to standard output that
//! fails with EPIPE ends the process that way.

use std::io::Write as _;

/// Prints one line on standard output; `?` hands a failure to `main` as
/// [`crate::cli::Fail::Output`].
macro_rules! say {
    ($($t:tt)*) => {
        $crate::cli::output::line(format_args!($($t)*)).map_err($crate::cli::Fail::Output)?
    };
}
pub(crate) use say;

/// Prints one line on standard error, ignoring failure (there is nowhere left to say
/// it).
macro_rules! tell {
    ($($t:tt)*) => {
        $crate::cli::output::note(format_args!($($t)*))
    };
}
pub(crate) use tell;

/// Writes `args` and a newline to standard output.
pub fn line(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_fmt(args)?;
    o.write_all(b"\n")
}

/// Writes `args` and a newline to standard error.
pub fn note(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// Writes bytes to standard output as they are.
pub fn raw(data: &[u8]) -> std::io::Result<()> {
    std::io::stdout().lock().write_all(data)
}

/// Flushes standard output.
pub fn flush() -> std::io::Result<()> {
    std::io::stdout().lock().flush()
}

/// Ends the process as a write to a closed pipe ends any Unix filter: killed by
/// SIGPIPE (a shell shows status 141), with nothing printed.
pub fn end_by_sigpipe() -> ! {
    // SAFETY: signal(2) and raise(3) with constants; the default action of SIGPIPE
    // terminates the process, which is the intent.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Not reached: SIGPIPE's default action ends the process. Should it be blocked
    // by whoever started us, exit with the status a shell would show.
    std::process::exit(128 + libc::SIGPIPE)
}
