//! Shared test support: start the real `vfpgad` binary on temporary sockets, connect
//! the test frontend, and small request helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use vfpga_proto::{ElemType, Opcode, Status};
use vfpga_vhu_frontend::{Arg, Layout, Options, Reply, VhuFrontend};

/// A `vfpgad` process serving one socket per guest in a temporary folder.
pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub sockets: Vec<PathBuf>,
    args: Vec<String>,
}

impl Daemon {
    /// Starts the daemon for `guests` guests with extra command-line `args`.
    pub fn start(guests: usize, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sockets: Vec<PathBuf> = (0..guests)
            .map(|i| dir.path().join(format!("vm{i}.sock")))
            .collect();
        let mut all: Vec<String> = sockets
            .iter()
            .enumerate()
            .flat_map(|(i, s)| ["--socket".to_owned(), format!("vm{i}={}", s.display())])
            .collect();
        all.extend(args.iter().map(|a| (*a).to_owned()));
        Self::launch(dir, sockets, &all)
    }

    /// Starts the daemon with `args` in `dir`, and waits until the unix sockets `wait`
    /// exist (the daemon creates every listener before any). Its log goes to
    /// `dir/vfpgad.log` ([`Daemon::log`]), printed if the test fails.
    pub fn launch(dir: tempfile::TempDir, wait: Vec<PathBuf>, args: &[String]) -> Self {
        std::fs::File::create(dir.path().join("vfpgad.log")).unwrap();
        let mut d = Self {
            child: None,
            dir,
            sockets: wait,
            args: args.to_vec(),
        };
        d.spawn();
        d
    }

    /// Starts the daemon with the arguments it was launched with, its log appended,
    /// and waits for the sockets in `sockets` (removed first, so the wait is for the
    /// new process; other files, stream sockets included, stay as the last one left
    /// them).
    pub fn relaunch(&mut self) {
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("vfpgad.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vfpgad"))
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start vfpgad");
        self.child = Some(child);
        self.wait_for_sockets();
    }

    /// What the daemon has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vfpgad.log")).unwrap_or_default()
    }

    fn wait_for_sockets(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.sockets.iter().all(|s| s.exists()) {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "vfpgad exited ({st}) before creating its sockets:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "vfpgad did not create its sockets"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Connects a frontend to guest `i`'s socket.
    pub fn connect(&self, i: usize) -> VhuFrontend {
        self.connect_with(i, Options::default())
    }

    /// Connects with options.
    pub fn connect_with(&self, i: usize, opts: Options) -> VhuFrontend {
        VhuFrontend::connect(&self.sockets[i], opts).expect("connect to vfpgad")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `signal` and waits (up to `timeout`) for the process to exit.
    pub fn signal_and_wait(&mut self, signal: i32, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = i32::try_from(child.id()).unwrap();
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Restarts the daemon on the same sockets (after it was stopped or killed).
    pub fn restart(&mut self, args: &[&str]) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vfpgad"));
        for (i, s) in self.sockets.iter().enumerate() {
            cmd.arg("--socket").arg(format!("vm{i}={}", s.display()));
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("vfpgad.log"))
            .unwrap();
        cmd.args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stderr(log);
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
        self.child = Some(cmd.spawn().expect("restart vfpgad"));
        self.wait_for_sockets();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- vfpgad's log:\n{}", self.log());
        }
    }
}

/// Opens a session on `kernel`; panics unless the device says OK.
pub fn open(fe: &mut VhuFrontend, kernel: &str) -> u64 {
    let r = fe
        .call(
            0,
            Opcode::OpenSession,
            0,
            &[Arg::In(ElemType::U8, kernel.as_bytes())],
            Layout::Direct,
        )
        .unwrap();
    assert_eq!(r.status(), Some(Status::Ok), "open {kernel}: {:?}", r.resp);
    r.resp.value
}

/// Runs `session` on request queue 1 with `args`.
pub fn run(fe: &mut VhuFrontend, session: u64, args: &[Arg<'_>], layout: Layout) -> Reply {
    fe.call(1, Opcode::Run, session, args, layout).unwrap()
}

/// A valid request still works: the check after every malformed one.
pub fn still_serves(fe: &mut VhuFrontend) {
    let r = fe.call(1, Opcode::Nop, 0, &[], Layout::Direct).unwrap();
    assert_eq!(r.status(), Some(Status::Ok));
    let s = open(fe, "vadd_u32");
    let a: Vec<u8> = (0..64u32).flat_map(|x| x.to_le_bytes()).collect();
    let r = run(
        fe,
        s,
        &[
            Arg::In(ElemType::U32, &a),
            Arg::In(ElemType::U32, &a),
            Arg::Out(ElemType::U32, 256),
            Arg::Scalar(ElemType::U32, 64),
        ],
        Layout::Paged(4096),
    );
    assert_eq!(r.status(), Some(Status::Ok));
    let want: Vec<u8> = (0..64u32).flat_map(|x| (2 * x).to_le_bytes()).collect();
    assert_eq!(r.outputs[0], want);
    let c = fe
        .call(0, Opcode::CloseSession, s, &[], Layout::Direct)
        .unwrap();
    assert_eq!(c.status(), Some(Status::Ok));
}

#[allow(unused_imports)]
pub use vfpga_reference::Rng;

/// A well-behaved stream guest: a vadd of `n` elements through the guest library,
/// checked against the reference.
#[allow(clippy::cast_possible_truncation)] // the low bits of random words
pub fn vadd_ok(dev: &vfpga::Device, n: usize, seed: u64) {
    let mut rng = Rng(seed);
    let a: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    let b: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    let mut c = vec![0u32; n];
    dev.session("vadd_u32")
        .unwrap()
        .run(&mut [
            vfpga::Arg::input(&a),
            vfpga::Arg::input(&b),
            vfpga::Arg::output(&mut c),
            vfpga::Arg::scalar(ElemType::U32, n as u64),
        ])
        .unwrap();
    assert_eq!(c, vfpga_reference::vadd_u32(&a, &b));
}

/// The pl engine on the register-level model: a board with cores for `kernels` and
/// the daemon serving `guests` guests from it. Holding a core (the model's `hold`
/// fault) keeps a run in flight for as long as a test wants.
pub struct PlDaemon {
    pub board: vfpga_engine::pl::model::ModelBoard,
    pub daemon: Daemon,
    _dir: tempfile::TempDir,
}

impl PlDaemon {
    pub fn start(guests: usize, kernels: &[&str]) -> Self {
        Self::start_with(guests, kernels, &[])
    }

    /// Same, with more command-line arguments; `{dir}` in them stands for a folder
    /// that lives as long as the board.
    pub fn start_with(guests: usize, kernels: &[&str], args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let board =
            vfpga_engine::pl::model::ModelBoard::start(dir.path(), kernels, 600_000).unwrap();
        let config = dir.path().join("vfpgad.toml");
        std::fs::write(
            &config,
            format!(
                "[daemon]\nengine = \"pl\"\n[library]\ndir = {:?}\nallow = [\"base\"]\n[pl]\nroot = {:?}\nbitstream = \"base\"\n",
                board.library, board.root
            ),
        )
        .unwrap();
        let folder = dir.path().display().to_string();
        let mut all: Vec<String> = vec!["--config".into(), config.display().to_string()];
        all.extend(args.iter().map(|a| a.replace("{dir}", &folder)));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let daemon = Daemon::start(guests, &all);
        Self {
            board,
            daemon,
            _dir: dir,
        }
    }

    /// Holds runs on these cores (none: every core computes).
    pub fn hold(&self, cores: &[&str]) {
        self.board
            .model
            .set_faults(vfpga_engine::pl::model::Faults {
                hold: cores.iter().map(|c| (*c).to_owned()).collect(),
                ..Default::default()
            });
    }

    /// Waits until a held core has started a run.
    pub fn wait_held(&self) {
        self.wait_held_runs(1);
    }

    /// Waits until held cores have started `n` runs in all.
    pub fn wait_held_runs(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let seen = self.board.model.events();
            if seen.iter().filter(|e| e.contains("held")).count() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{n} runs were not held: {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
