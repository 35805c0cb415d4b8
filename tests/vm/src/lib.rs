//! Harness for the VM tests: builds the guest image once, runs real `vfpgad`
//! processes, boots the guest under QEMU (TCG) through `tests/vm/run-guest.sh` with a
//! 9p share for inputs and outputs, follows its console, and drives QEMU over QMP.
//!
//! Nothing outlives a test: daemons are killed on drop, `run-guest.sh` stops its QEMU
//! itself (timeout and trap) and is killed on drop too. Only one VM runs at a time
//! ([`vm_lock`]): the machines running these tests have two cores.

// Test support: a failed expectation here is a failed test, and its message says which.
#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub mod qmp;
pub use qmp::Qmp;

/// Where everything the tests need is.
#[derive(Debug)]
pub struct Env {
    /// Repository root.
    pub repo: PathBuf,
    /// Output of `tests/vm/build-guest.sh`.
    pub guest: PathBuf,
    /// The daemon binary.
    pub vfpgad: PathBuf,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn build_env() -> Result<Env, String> {
    let repo = repo().canonicalize().map_err(|e| e.to_string())?;
    let from = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join(default))
    };
    let vfpgad = from("VFPGA_VFPGAD", "target/release/vfpgad");
    let cli = from(
        "VFPGA_CLI",
        "target/guest/x86_64-unknown-linux-gnu/release/vfpga",
    );
    for (what, p, how) in [
        ("vfpgad", &vfpgad, "cargo build --release -p vfpgad"),
        ("the static vfpga CLI", &cli, "scripts/build-guest-cli.sh"),
    ] {
        if !p.is_file() {
            return Err(format!(
                "{what} not found at {} (build it: {how})",
                p.display()
            ));
        }
    }
    let out = Command::new(repo.join("tests/vm/build-guest.sh"))
        .arg("--bin")
        .arg(format!("{}:/bin/vfpga", cli.display()))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run tests/vm/build-guest.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!("tests/vm/build-guest.sh failed ({})", out.status));
    }
    let guest = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(Env {
        repo,
        guest,
        vfpgad,
    })
}

/// The environment, built once per test binary. Panics with what to do if a
/// prerequisite is missing.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Result<Env, String>> = OnceLock::new();
    match ENV.get_or_init(build_env) {
        Ok(e) => e,
        Err(e) => panic!("VM test environment: {e}"),
    }
}

/// A guest image of its own in `$VFPGA_CACHE/<out>`: `tests/vm/build-guest.sh` with the
/// static CLI and `args` (more modules, files, `--no-vfpga-module`). Rebuilt only when an
/// input changed.
pub fn guest_image(out: &str, args: &[String]) -> PathBuf {
    let e = env();
    let cli = std::env::var_os("VFPGA_CLI").map_or_else(
        || {
            e.repo
                .join("target/guest/x86_64-unknown-linux-gnu/release/vfpga")
        },
        PathBuf::from,
    );
    let cache = std::env::var_os("VFPGA_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/vfpga"),
        PathBuf::from,
    );
    let o = Command::new(e.repo.join("tests/vm/build-guest.sh"))
        .arg("--out")
        .arg(cache.join(out))
        .arg("--bin")
        .arg(format!("{}:/bin/vfpga", cli.display()))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/vm/build-guest.sh");
    assert!(
        o.status.success(),
        "tests/vm/build-guest.sh --out {out} failed ({})",
        o.status
    );
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// The vsock modules, for `--modules`.
pub const VSOCK_MODULES: &str =
    "vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport";

/// The guest image without `virtio_vfpga.ko`, with the vsock modules instead: a guest
/// that reaches vfpgad only over a stream.
pub fn stream_guest() -> PathBuf {
    guest_image(
        "guest-stream",
        &[
            "--no-vfpga-module".into(),
            "--modules".into(),
            VSOCK_MODULES.into(),
        ],
    )
}

/// rust-vmm's vhost-device-vsock serving one guest: the guest's vsock device connects
/// to `socket`; the guest's connections to the host's port P arrive on the unix socket
/// `uds` + `_P`.
#[derive(Debug)]
pub struct VsockDevice {
    child: Child,
    /// The vhost-user socket for QEMU's `vhost-user-vsock-pci`.
    pub socket: PathBuf,
    /// The host side's socket prefix (`uds-path`).
    pub uds: PathBuf,
}

impl VsockDevice {
    /// Starts the device for a guest with CID `cid`, its sockets in `dir`.
    pub fn start(dir: &Path, cid: u32) -> Self {
        let bin = std::env::var_os("VFPGA_VSOCK_DEVICE").map_or_else(
            || {
                let out = Command::new(env().repo.join("tests/vm/fetch-vsock-device.sh"))
                    .stderr(Stdio::inherit())
                    .output()
                    .expect("run tests/vm/fetch-vsock-device.sh");
                assert!(
                    out.status.success(),
                    "tests/vm/fetch-vsock-device.sh failed"
                );
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            },
            PathBuf::from,
        );
        let socket = dir.join("vsock.sock");
        let uds = dir.join("vm.vsock");
        let mut cmd = Command::new(&bin);
        // SAFETY: only prctl(2) between fork and exec (async-signal-safe).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .arg("--vm")
            .arg(format!(
                "guest-cid={cid},socket={},uds-path={}",
                socket.display(),
                uds.display()
            ))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "vhost-device-vsock did not create {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Self { child, socket, uds }
    }

    /// The host-side socket for the guest's connections to port `port`.
    pub fn port(&self, port: u32) -> PathBuf {
        PathBuf::from(format!("{}_{port}", self.uds.display()))
    }
}

impl Drop for VsockDevice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serialises VMs: hold the guard while one runs.
pub fn vm_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A `vfpgad` process serving one socket per guest name.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    exe: PathBuf,
    args: Vec<String>,
    /// Sockets, in the order of the names given.
    pub sockets: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `vfpgad` with a socket per name and extra arguments.
    pub fn start(names: &[&str], extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let sockets: Vec<PathBuf> = names
            .iter()
            .map(|n| dir.path().join(format!("{n}.sock")))
            .collect();
        let mut args = Vec::new();
        for (n, s) in names.iter().zip(&sockets) {
            args.push("--socket".to_owned());
            args.push(format!("{n}={}", s.display()));
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut d = Self {
            child: None,
            exe: env().vfpgad.clone(),
            args,
            sockets,
            _dir: dir,
        };
        d.spawn();
        d
    }

    /// Starts the binary `exe` (a copy of vfpgad) with `args`, waiting for the unix
    /// sockets `wait`.
    pub fn start_from(exe: &Path, args: &[String], wait: &[PathBuf]) -> Self {
        let mut d = Self {
            child: None,
            exe: exe.to_owned(),
            args: args.to_vec(),
            sockets: wait.to_vec(),
            _dir: tempfile::tempdir().expect("temp dir"),
        };
        d.spawn();
        d
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts `vfpgad` with `args` only, waiting for the unix sockets `wait`.
    pub fn start_with(args: &[String], wait: &[PathBuf]) -> Self {
        Self::start_from(&env().vfpgad, args, wait)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(&self.exe);
        // If the test process dies (a timeout's SIGTERM or SIGKILL runs no Drop), the
        // daemon gets SIGTERM instead of living on. The signal follows the spawning
        // thread: start and drop a Daemon in the same thread, as the tests do.
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // prctl(2), which is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("start vfpgad");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.sockets.iter().all(|s| s.exists()) {
            // A daemon that refused its configuration has said why on stderr already.
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                panic!("vfpgad exited ({st}) before creating its sockets");
            }
            assert!(
                Instant::now() < deadline,
                "vfpgad did not create its sockets"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the daemon with SIGKILL (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the daemon again on the same sockets.
    pub fn restart(&mut self) {
        self.kill();
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
        self.spawn();
    }

    /// Stops the daemon with SIGTERM; returns whether it exited cleanly in time.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let Ok(pid) = i32::try_from(c.id()) else {
            return false;
        };
        // SAFETY: kill(2) on our own, not yet reaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How to boot the guest.
#[derive(Clone, Debug)]
pub struct GuestOpts {
    /// Scenario (`tests/vm/guest/scenarios/<name>.sh`).
    pub scenario: String,
    /// vfpga devices, one per socket.
    pub sockets: Vec<PathBuf>,
    /// Folder shared with the guest as /host.
    pub share: PathBuf,
    /// Seconds before QEMU is stopped.
    pub timeout: u32,
    /// Guest memory, MiB.
    pub mem: u32,
    /// QMP socket to expose.
    pub qmp: Option<PathBuf>,
    /// More `tests/vm/run-guest.sh` options, e.g. `--netboot menu.ipxe --tftp DIR
    /// --netns NAME` for a network boot.
    pub run_args: Vec<String>,
}

impl GuestOpts {
    /// A scenario with one device and a share.
    pub fn new(scenario: &str, sockets: &[PathBuf], share: &Path) -> Self {
        Self {
            scenario: scenario.to_owned(),
            sockets: sockets.to_vec(),
            share: share.to_owned(),
            timeout: 240,
            mem: 1024,
            qmp: None,
            run_args: Vec::new(),
        }
    }
}

/// A running guest.
#[derive(Debug)]
pub struct Guest {
    child: Option<Child>,
    lines: Receiver<String>,
    console: Arc<Mutex<String>>,
}

/// How a guest run ended.
#[derive(Debug)]
pub struct Outcome {
    /// run-guest.sh's exit status: the scenario's, or 124 (timeout), 125 (failure).
    pub rc: i32,
    /// Everything the console printed.
    pub console: String,
}

impl Guest {
    /// Boots the guest; returns at once.
    pub fn spawn(o: &GuestOpts) -> Self {
        let e = env();
        let mut cmd = Command::new(e.repo.join("tests/vm/run-guest.sh"));
        cmd.arg("--scenario")
            .arg(&o.scenario)
            .arg("--guest")
            .arg(&e.guest)
            .arg("--share")
            .arg(&o.share)
            .arg("--timeout")
            .arg(o.timeout.to_string())
            .arg("--mem")
            .arg(o.mem.to_string())
            .arg("--vq-size")
            .arg("1024")
            .arg("--log")
            .arg(o.share.join("console.log"));
        for s in &o.sockets {
            cmd.arg("--vfpga").arg(s);
        }
        if let Some(q) = &o.qmp {
            cmd.arg("--qmp").arg(q);
        }
        cmd.args(&o.run_args);
        // run-guest.sh attaches the devices with this crate's QMP client; cargo builds
        // it next to the test binaries (target/PROFILE/, the tests in deps/ below).
        if std::env::var_os("VFPGA_QMP").is_none() {
            if let Some(tool) = qmp_tool() {
                cmd.env("VFPGA_QMP", tool);
            }
        }
        // As for the daemon: if the test process dies, run-guest.sh gets SIGTERM and
        // stops its QEMU (its trap), instead of running until its own timeout.
        // SAFETY: only prctl(2) between fork and exec (async-signal-safe).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("start run-guest.sh");
        let (tx, rx) = mpsc::channel();
        let console = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (tx, console) = (tx.clone(), console.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut c) = console.lock() {
                        c.push_str(&line);
                        c.push('\n');
                    }
                    let _ = tx.send(line);
                }
            });
        }
        Self {
            child: Some(child),
            lines: rx,
            console,
        }
    }

    /// Waits until a console line contains `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits for the run to end.
    pub fn finish(mut self) -> Outcome {
        let rc = self
            .child
            .take()
            .and_then(|mut c| c.wait().ok())
            .and_then(|s| s.code())
            .unwrap_or(-1);
        // Let the reader threads drain the pipes: they end (and the channel with them)
        // at the pipes' end of file. The bound only guards against a stray process
        // holding a pipe open.
        while self.lines.recv_timeout(Duration::from_secs(30)).is_ok() {}
        let console = self.console.lock().map(|c| c.clone()).unwrap_or_default();
        Outcome { rc, console }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // run-guest.sh's trap stops its QEMU on SIGTERM.
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: kill(2) on our own child.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `vfpga-qmp` binary built with the test running, if there is one.
fn qmp_tool() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let tool = exe.parent()?.parent()?.join("vfpga-qmp");
    tool.is_file().then_some(tool)
}

/// Boots the guest and waits for the scenario to end.
pub fn run(o: &GuestOpts) -> Outcome {
    Guest::spawn(o).finish()
}

/// Writes `data` to `share/rel`, creating folders.
pub fn put(share: &Path, rel: &str, data: &[u8]) {
    let p = share.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("create share folder");
    }
    std::fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// Reads `share/rel`.
pub fn get(share: &Path, rel: &str) -> Vec<u8> {
    let p = share.join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}
