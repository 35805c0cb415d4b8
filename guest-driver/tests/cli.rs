//! The `vfpga` CLI as a user runs it: the real binary against the real vfpgad (its
//! stream server, on the embedded sim engine, serving a unix socket). Expected values
//! come from outside the code under test: worked out by hand here, or computed by NumPy
//! and Python's hashlib from files NumPy wrote and read (`python3-numpy`, installed by
//! scripts/setup-tests.sh).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use vfpga_engine::sim::SimEngine;
use vfpgad::config::GuestConfig;
use vfpgad::{Config, Server};

/// vfpgad serving guest `vm0` on a unix socket, and a folder for the files.
struct Daemon {
    server: Option<Server>,
    dir: tempfile::TempDir,
    endpoint: String,
}

impl Daemon {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vm0.stream");
        let mut guest = GuestConfig::named("vm0");
        guest.listen = vec![format!("unix:{}", socket.display())];
        let config = Config {
            guests: vec![guest],
            ..Config::default()
        };
        config.validate().unwrap();
        let server = Server::start(&config, Arc::new(SimEngine::new(None).unwrap())).unwrap();
        Self {
            server: Some(server),
            endpoint: format!("unix:{}", socket.display()),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vfpga"));
        c.arg("--device")
            .arg(&self.endpoint)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("VFPGA_DEVICE")
            .env_remove("VFPGA_TLS_DIR")
            .env("VFPGA_RECONNECT_SECS", "0")
            .stdin(Stdio::null());
        c
    }

    /// Runs `vfpga ARGS` to the end.
    fn vfpga(&self, args: &[&str]) -> Run {
        Run(self.cmd(args).output().unwrap())
    }

    /// Runs `vfpga ARGS` with `input` on its standard input.
    fn vfpga_with_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        let mut c = self.cmd(args);
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, input).unwrap();
        drop(stdin);
        Run(child.wait_with_output().unwrap())
    }

    /// Runs a Python script with NumPy in the folder; returns its standard output.
    fn numpy(&self, script: &str) -> String {
        let out = Command::new(PYTHON)
            .arg("-c")
            .arg(format!("import numpy as np\n{script}"))
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e} (run scripts/setup-tests.sh)"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("No module named 'numpy'"),
            "NumPy is missing: run scripts/setup-tests.sh (apt-get install python3-numpy)"
        );
        assert!(out.status.success(), "python failed:\n{script}\n{err}");
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown(Duration::from_secs(10));
        }
    }
}

/// Debian's Python, where python3-numpy installs (another python3 may come first in
/// PATH).
const PYTHON: &str = "/usr/bin/python3";

/// A finished `vfpga`.
struct Run(Output);

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Asserts success; returns stdout.
    fn ok(&self) -> String {
        assert!(
            self.0.status.success(),
            "vfpga failed ({}): {}",
            self.0.status,
            self.stderr()
        );
        self.stdout()
    }

    /// Asserts exit status `code`; returns stderr.
    fn fails(&self, code: i32) -> String {
        assert_eq!(
            self.0.status.code(),
            Some(code),
            "stdout {:?}, stderr {:?}",
            self.stdout(),
            self.stderr()
        );
        self.stderr()
    }
}

fn le32(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn inline_values_in_typed_values_out() {
    let d = Daemon::start();
    // 3 + 0xffffffff wraps to 2.
    let r = d.vfpga(&[
        "run",
        "vadd_u32",
        "--in",
        "a=1,2,3",
        "--in",
        "b=10,20,0xffffffff",
    ]);
    assert_eq!(r.ok(), "c = [11, 22, 2]\n");
    assert!(
        r.stderr().contains("vadd_u32: ok, 12 bytes out"),
        "{}",
        r.stderr()
    );
    // i16 samples, i32 taps and outputs: y = [2·1, 2·(-2) - 1·1, 2·3 - 1·(-2)].
    let r = d.vfpga(&["run", "fir", "--in", "x=[1, -2, 3]", "--in", "taps=2,-1"]);
    assert_eq!(r.ok(), "y = [2, -5, 8]\n");
    // A list that starts with a minus sign is a value, not an option.
    let r = d.vfpga(&["run", "fir", "--in", "-1,2", "--in", "-3"]);
    assert_eq!(r.ok(), "y = [3, -6]\n");
    // f32: 0.5 + 0.25, and 1e30 + 1e30 rounds to binary32 2e30.
    let r = d.vfpga(&[
        "run",
        "vadd_f32",
        "--in",
        "0.5 1e30",
        "--in",
        "[0.25, 1e30]",
    ]);
    assert_eq!(r.ok(), "c = [0.75, 2e30]\n");
    // Inputs by position and by name mixed, scalars as before.
    let r = d.vfpga(&[
        "run", "mmult", "--arg", "m=1", "--arg", "k=2", "--arg", "n=1", "--in", "b=3,4", "--in",
        "1,2",
    ]);
    assert_eq!(r.ok(), "c = [11.0]\n", "1·3 + 2·4");
}

#[test]
fn hex_raw_and_long_outputs() {
    let d = Daemon::start();
    // FIPS 180-4's example: SHA-256("abc").
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let r = d.vfpga(&["run", "sha256", "--in", "97,98,99", "--format", "hex"]);
    assert_eq!(r.ok(), format!("digest = {abc}\n"));
    let r = d.vfpga_with_stdin(&["run", "sha256", "--in", "@-", "--format", "hex"], b"abc");
    assert_eq!(r.ok(), format!("digest = {abc}\n"));
    let r = d.vfpga_with_stdin(&["run", "sha256", "--in", "@-", "--format", "raw"], b"abc");
    r.ok();
    let hex: String = r.0.stdout.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, abc);
    // Raw: the little-endian bytes themselves.
    let r = d.vfpga(&[
        "run",
        "vadd_u32",
        "--in",
        "1,2",
        "--in",
        "256,65536",
        "--format",
        "raw",
    ]);
    r.ok();
    assert_eq!(r.0.stdout, le32(&[257, 65538]));
    // 100 elements: 64 shown and said so on stderr, or all with --show 0.
    let a: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let a = a.join(",");
    let r = d.vfpga(&["run", "vadd_u32", "--in", &a, "--in", &a]);
    let shown: Vec<String> = (0..64).map(|i| (2 * i).to_string()).collect();
    assert_eq!(r.ok(), format!("c = [{}, ...]\n", shown.join(", ")));
    assert!(
        r.stderr().contains(
            "vfpga: c has 100 elements, 64 shown (--show 0 prints all, --out c=@FILE saves them)"
        ),
        "{}",
        r.stderr()
    );
    let r = d.vfpga(&["run", "vadd_u32", "--in", &a, "--in", &a, "--show", "0"]);
    let all: Vec<String> = (0..100).map(|i| (2 * i).to_string()).collect();
    assert_eq!(r.ok(), format!("c = [{}]\n", all.join(", ")));
    let r = d.vfpga(&[
        "run", "vadd_u32", "--in", &a, "--in", &a, "--show", "2", "--format", "hex",
    ]);
    assert_eq!(r.ok(), "c = 0000000002000000...\n");
}

#[test]
fn raw_files_in_the_old_form_and_with_at() {
    let d = Daemon::start();
    std::fs::write(d.path("a.bin"), le32(&[1, 2, 3, 4])).unwrap();
    std::fs::write(d.path("b.bin"), le32(&[10, 20, 30, 40])).unwrap();
    d.vfpga(&[
        "run", "vadd_u32", "--in", "a.bin", "--in", "b.bin", "--out", "c.bin",
    ])
    .ok();
    assert_eq!(
        std::fs::read(d.path("c.bin")).unwrap(),
        le32(&[11, 22, 33, 44])
    );
    d.vfpga(&[
        "run",
        "vadd_u32",
        "--in",
        "a=@a.bin",
        "--in",
        "@b.bin",
        "--out",
        "c=@c2.bin",
    ])
    .ok();
    assert_eq!(
        std::fs::read(d.path("c2.bin")).unwrap(),
        le32(&[11, 22, 33, 44])
    );
    // A file and values together.
    let r = d.vfpga(&["run", "vadd_u32", "--in", "@a.bin", "--in", "0,0,0,1"]);
    assert_eq!(r.ok(), "c = [1, 2, 3, 5]\n");
}

#[test]
fn npy_files_numpy_wrote_and_reads() {
    let d = Daemon::start();
    // Random f32 data, 2-D inputs (C order), versions 1.0, 2.0 and 3.0 of the format.
    d.numpy(
        "rng = np.random.default_rng(7)\n\
         a = rng.standard_normal((2, 3)).astype(np.float32)\n\
         b = rng.standard_normal((2, 3)).astype(np.float32)\n\
         np.save('a.npy', a)\n\
         with open('b.npy', 'wb') as f: np.lib.format.write_array(f, b, version=(2, 0))\n\
         with open('b3.npy', 'wb') as f: np.lib.format.write_array(f, b, version=(3, 0))\n\
         np.save('ma.npy', np.arange(6, dtype=np.float32).reshape(2, 3))\n\
         np.save('mb.npy', (np.arange(12, dtype=np.float32) - 5).reshape(3, 4))\n\
         np.save('x.npy', np.array([-32768, 5, 32767], dtype=np.int16))\n\
         np.save('taps.npy', np.array([3, -2], dtype=np.int32))\n\
         np.save('data.npy', np.frombuffer(b'The quick brown fox', dtype=np.uint8))\n",
    );
    for b in ["b.npy", "b3.npy"] {
        d.vfpga(&[
            "run",
            "vadd_f32",
            "--in",
            "a=@a.npy",
            "--in",
            &format!("b=@{b}"),
            "--out",
            "c=@c.npy",
        ])
        .ok();
        let v = d.numpy(
            "c = np.load('c.npy')\n\
             a, b = np.load('a.npy'), np.load('b.npy')\n\
             print(c.dtype, c.shape, np.array_equal(c, (a + b).ravel()))",
        );
        assert_eq!(v, "float32 (6,) True\n", "{b}");
    }
    // mmult of small integers in f32 is exact, whatever the order of the sums.
    d.vfpga(&[
        "run", "mmult", "--arg", "m=2", "--arg", "k=3", "--arg", "n=4", "--in", "@ma.npy", "--in",
        "@mb.npy", "--out", "@mc.npy",
    ])
    .ok();
    let v = d.numpy(
        "c = np.load('mc.npy').reshape(2, 4)\n\
         print(np.array_equal(c, np.load('ma.npy') @ np.load('mb.npy')))",
    );
    assert_eq!(v, "True\n");
    // i16 samples, i32 taps: NumPy's convolution truncated to n, in i32 output.
    d.vfpga(&[
        "run",
        "fir",
        "--in",
        "@x.npy",
        "--in",
        "@taps.npy",
        "--out",
        "@y.npy",
    ])
    .ok();
    let v = d.numpy(
        "y = np.load('y.npy')\n\
         x, t = np.load('x.npy').astype(np.int64), np.load('taps.npy').astype(np.int64)\n\
         print(y.dtype, np.array_equal(y, np.convolve(x, t)[:len(x)]))",
    );
    assert_eq!(v, "int32 True\n");
    // u8 data: the digest in hex, against hashlib's.
    let r = d.vfpga(&["run", "sha256", "--in", "@data.npy", "--format", "hex"]);
    let want = d.numpy(
        "import hashlib\n\
         print('digest = ' + hashlib.sha256(np.load('data.npy').tobytes()).hexdigest())",
    );
    assert_eq!(r.ok(), want);
}

#[test]
fn npy_files_of_the_wrong_kind_are_refused_clearly() {
    let d = Daemon::start();
    d.numpy(
        "np.save('a.npy', np.ones(6, dtype=np.float32))\n\
         np.save('f64.npy', np.ones(6))\n\
         np.save('big.npy', np.ones(6, dtype='>f4'))\n\
         np.save('fortran.npy', np.asfortranarray(np.ones((2, 3), dtype=np.float32)))\n\
         np.save('five.npy', np.ones(5, dtype=np.float32))\n\
         np.save('rec.npy', np.zeros(6, dtype=[('x', '<f4')]))\n\
         open('cut.npy', 'wb').write(open('a.npy', 'rb').read()[:-3])\n",
    );
    let vadd = |b: &str| {
        d.vfpga(&["run", "vadd_f32", "--in", "@a.npy", "--in", b])
            .fails(2)
    };
    let e = vadd("@f64.npy");
    assert!(
        e.contains("vfpga: vadd_f32: --in b: f64.npy: it holds dtype '<f8' (float64) but the argument is f32: save it as f32, e.g. np.save(path, a.astype(np.float32))"),
        "{e}"
    );
    let e = vadd("@big.npy");
    assert!(e.contains("big-endian '>f4'"), "{e}");
    let e = vadd("@fortran.npy");
    assert!(e.contains("Fortran (column-major) order"), "{e}");
    let e = vadd("@rec.npy");
    assert!(e.contains("structured (record) array"), "{e}");
    let e = vadd("@cut.npy");
    assert!(
        e.contains("cut.npy: its shape (6,) means 24 bytes of data, but 21 bytes follow the header (truncated)"),
        "{e}"
    );
    let e = vadd("@five.npy");
    assert!(
        e.contains("input `b` has 5 f32 elements (20 bytes, from five.npy of shape (5,)) but vadd_f32 needs 24 bytes for it (n*4 bytes with n=6)"),
        "{e}"
    );
    let e = vadd("@missing.npy");
    assert!(
        e.contains("--in b: cannot read missing.npy: No such file"),
        "{e}"
    );
    let e = vadd("1,2,x");
    assert!(
        e.contains("`1,2,x` is neither a file nor a list of f32 values (element 3: `x` is not a valid f32 value)"),
        "{e}"
    );
    let e = d
        .vfpga(&[
            "run", "vadd_u32", "--in", "1,2", "--in", "1,256", "--out", "c=@-",
        ])
        .fails(2);
    assert!(
        e.contains("--out c: --out cannot write to standard output"),
        "{e}"
    );
}

/// A pipe whose reader is gone before `vfpga` starts: every write to it fails with
/// EPIPE, deterministically.
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) fills two descriptors, which we own from here on.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0);
    // SAFETY: both are open descriptors nothing else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(r);
    w
}

#[test]
fn a_reader_that_goes_away_ends_vfpga_quietly() {
    let d = Daemon::start();
    let a = vec!["7"; 5000].join(",");
    for args in [
        &["kernels"][..],
        &["info"],
        &["run", "vadd_u32", "--in", &a, "--in", &a, "--show", "0"],
        &["run", "vadd_u32", "--in", &a, "--in", &a, "--format", "raw"],
    ] {
        let out = d
            .cmd(args)
            .stdout(Stdio::from(closed_pipe()))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // As `vfpga-vhu-demo` and any Unix filter: killed by SIGPIPE, nothing said.
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "vfpga {args:?}: {} ({err})",
            out.status
        );
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{err}"
        );
    }
    // The daemon saw nothing wrong: a run right after works.
    let r = d.vfpga(&["run", "vadd_u32", "--in", "1", "--in", "2"]);
    assert_eq!(r.ok(), "c = [3]\n");
}

#[test]
fn help_teaches_the_forms() {
    let out = Command::new(env!("CARGO_BIN_EXE_vfpga"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for s in [
        "[NAME=]SOURCE",
        "@FILE",
        "@-",
        "1,2,3",
        "--format",
        "values",
        "hex",
        "raw",
        "--show",
    ] {
        assert!(help.contains(s), "vfpga run --help lacks {s}:\n{help}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vfpga"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for s in [".npy", "A bare FILE, the form", "--format hex", "SIGPIPE"] {
        assert!(help.contains(s), "vfpga --help lacks {s}:\n{help}");
    }
}
