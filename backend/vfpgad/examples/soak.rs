//! A soak of a real vfpgad process: `GUESTS` guests, each with one thread on its
//! virtio device (the vhost-user test frontend) and `THREADS - 1` on stream
//! connections (the guest library), running a mix of kernels on random inputs for
//! `MINUTES`, every result checked against the independent references. Every 10 s it
//! samples the daemon's resident memory and open file descriptors; at the end it
//! prints the samples and fails if any run failed, or if memory or descriptors kept
//! growing after the first minute (warm-up: buffers and pools reach their size).
//!
//! `scripts/soak.sh` runs it (10 minutes, 8 guests x 4 threads, two VMs beside).
//! Usage: `soak VFPGAD DIR [MINUTES] [GUESTS] [THREADS]`; DIR gets the sockets
//! (`vmN.sock`, `vmN.stream`) and the configuration, with two more guests `vm-a` and
//! `vm-b` for VMs to attach to. If DIR holds a file `vms`, warm-up also waits for a
//! file `warm` (the script writes it once the VMs run kernels: a VM that attaches
//! adds its memory map and event descriptors, which is not growth), and at the end the
//! soak writes `finish` and waits for `vms-stopped` before it stops the daemon (a VM
//! whose daemon went away would wait for its requests forever).
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfpga::{Arg as GArg, Device};
use vfpga_proto::{ElemType, Opcode, Status};
use vfpga_reference::{self as reference, le, Rng};
use vfpga_vhu_frontend::{Arg, Layout, VhuFrontend};

#[derive(Default)]
struct Tally {
    runs: AtomicU64,
    errors: AtomicU64,
}

impl Tally {
    fn check(&self, what: &str, ok: bool) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("soak: FAILED: {what}");
        }
    }
}

/// One stream thread: vadd, sha256 and mmult in turn, of sizes from a few bytes to
/// 1 MiB.
fn stream_worker(uri: String, seed: u64, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let dev = Device::open(&uri).unwrap();
    let (va, sh, mm) = (
        dev.session("vadd_u32").unwrap(),
        dev.session("sha256").unwrap(),
        dev.session("mmult").unwrap(),
    );
    let mut rng = Rng(seed);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        match i % 3 {
            0 => {
                let n = 1 + (rng.next() % (1 << 18)) as usize;
                let a: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
                let b: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
                let mut c = vec![0u32; n];
                let r = va.run(&mut [
                    GArg::input(&a),
                    GArg::input(&b),
                    GArg::output(&mut c),
                    GArg::scalar(ElemType::U32, n as u64),
                ]);
                tally.check("stream vadd", r.is_ok() && c == reference::vadd_u32(&a, &b));
            }
            1 => {
                let len = (rng.next() % 100_000) as usize;
                let data = rng.bytes(len);
                let mut d = vec![0u8; 32];
                let r = sh.run(&mut [
                    GArg::input(&data),
                    GArg::output(&mut d),
                    GArg::scalar(ElemType::U64, data.len() as u64),
                ]);
                tally.check("stream sha256", r.is_ok() && d == reference::sha256(&data));
            }
            _ => {
                let m = 1 + (rng.next() % 48) as usize;
                let a: Vec<f32> = (0..m * m).map(|_| (rng.next() % 64) as f32).collect();
                let mut c = vec![0f32; m * m];
                let r = mm.run(&mut [
                    GArg::input(&a),
                    GArg::input(&a),
                    GArg::output(&mut c),
                    GArg::scalar(ElemType::U32, m as u64),
                    GArg::scalar(ElemType::U32, m as u64),
                    GArg::scalar(ElemType::U32, m as u64),
                ]);
                tally.check(
                    "stream mmult",
                    r.is_ok() && c == reference::mmult(&a, &a, m, m, m),
                );
            }
        }
    }
}

/// The virtio thread of a guest: vadd and sha256 through the test frontend, spread over
/// its request queues, in 4 KiB guest pages.
fn virtio_worker(
    socket: PathBuf,
    queues: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let mut fe = VhuFrontend::connect(&socket, Default::default()).unwrap();
    let open = |fe: &mut VhuFrontend, k: &str| {
        fe.call(
            0,
            Opcode::OpenSession,
            0,
            &[Arg::In(ElemType::U8, k.as_bytes())],
            Layout::Direct,
        )
        .unwrap()
        .resp
        .value
    };
    let (va, sh) = (open(&mut fe, "vadd_u32"), open(&mut fe, "sha256"));
    let mut rng = Rng(seed);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let q = 1 + (i as usize % queues);
        if i % 2 == 0 {
            let n = 1 + (rng.next() % 50_000) as usize;
            let a: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
            let b: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
            let r = fe.call(
                q,
                Opcode::Run,
                va,
                &[
                    Arg::In(ElemType::U32, &le(&a, u32::to_le_bytes)),
                    Arg::In(ElemType::U32, &le(&b, u32::to_le_bytes)),
                    Arg::Out(ElemType::U32, n * 4),
                    Arg::Scalar(ElemType::U32, n as u64),
                ],
                Layout::Paged(4096),
            );
            let ok = r.is_ok_and(|r| {
                r.status() == Some(Status::Ok)
                    && r.outputs[0] == le(&reference::vadd_u32(&a, &b), u32::to_le_bytes)
            });
            tally.check("virtio vadd", ok);
        } else {
            let len = (rng.next() % 100_000) as usize;
            let data = rng.bytes(len);
            let r = fe.call(
                q,
                Opcode::Run,
                sh,
                &[
                    Arg::In(ElemType::U8, &data),
                    Arg::Out(ElemType::U8, 32),
                    Arg::Scalar(ElemType::U64, data.len() as u64),
                ],
                Layout::Paged(4096),
            );
            let ok = r.is_ok_and(|r| {
                r.status() == Some(Status::Ok) && r.outputs[0] == reference::sha256(&data)
            });
            tally.check("virtio sha256", ok);
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn start(vfpgad: &Path, dir: &Path, guests: usize, queues: usize) -> Child {
    let mut toml = format!("[device]\nrequest_queues = {queues}\n");
    let names: Vec<String> = (0..guests)
        .map(|g| format!("vm{g}"))
        .chain(["vm-a".into(), "vm-b".into()])
        .collect();
    for g in &names {
        toml.push_str(&format!(
            "[[guest]]\nname = \"{g}\"\nsocket = \"{0}/{g}.sock\"\nlisten = [\"unix:{0}/{g}.stream\"]\n",
            dir.display()
        ));
    }
    let cfg = dir.join("vfpgad.toml");
    std::fs::write(&cfg, toml).unwrap();
    let child = Command::new(vfpgad)
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !names
        .iter()
        .all(|g| dir.join(format!("{g}.stream")).exists())
    {
        assert!(Instant::now() < deadline, "vfpgad did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (vfpgad, dir) = match args.as_slice() {
        [v, d, ..] => (PathBuf::from(v), PathBuf::from(d)),
        _ => {
            eprintln!("usage: soak VFPGAD DIR [MINUTES] [GUESTS] [THREADS]");
            std::process::exit(2);
        }
    };
    let minutes: f64 = args.get(2).map_or(10.0, |s| s.parse().unwrap());
    let guests: usize = args.get(3).map_or(8, |s| s.parse().unwrap());
    let threads: usize = args.get(4).map_or(4, |s| s.parse().unwrap());
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = start(&vfpgad, &dir, guests, 4);
    let pid = child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut workers = Vec::new();
    for g in 0..guests {
        let (s, t) = (stop.clone(), tally.clone());
        let socket = dir.join(format!("vm{g}.sock"));
        workers.push(std::thread::spawn(move || {
            virtio_worker(socket, 4, 1000 + g as u64, s, t);
        }));
        for k in 1..threads {
            let (s, t) = (stop.clone(), tally.clone());
            let uri = format!("unix:{}", dir.join(format!("vm{g}.stream")).display());
            workers.push(std::thread::spawn(move || {
                stream_worker(uri, (g * 100 + k) as u64, s, t);
            }));
        }
    }
    // Ready for VMs: scripts/soak.sh waits for this file.
    std::fs::write(dir.join("ready"), b"").unwrap();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(minutes * 60.0);
    let mut samples = Vec::new();
    // When the VMs were seen running (at once without VMs).
    let mut vms_at = u64::MAX;
    println!(
        "{:>6} {:>10} {:>6} {:>10} {:>7}",
        "time s", "RSS KiB", "fds", "runs", "errors"
    );
    loop {
        let (rss, n) = (rss_kib(pid), fds(pid));
        let runs = tally.runs.load(Ordering::Relaxed);
        let errors = tally.errors.load(Ordering::Relaxed);
        let t = t0.elapsed().as_secs();
        println!("{t:>6} {rss:>10} {n:>6} {runs:>10} {errors:>7}");
        samples.push((t, rss, n));
        if vms_at == u64::MAX && (!dir.join("vms").exists() || dir.join("warm").exists()) {
            vms_at = t;
        }
        if Instant::now() >= end {
            break;
        }
        std::thread::sleep(
            Duration::from_secs(10).min(end.saturating_duration_since(Instant::now())),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    if dir.join("vms").exists() {
        std::fs::write(dir.join("finish"), b"").unwrap();
        let deadline = Instant::now() + Duration::from_secs(300);
        while !dir.join("vms-stopped").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // SAFETY: signalling the daemon this program started.
    unsafe { libc::kill(libc::pid_t::try_from(pid).unwrap(), libc::SIGTERM) };
    let clean = child.wait().unwrap().success();
    let runs = tally.runs.load(Ordering::Relaxed);
    let errors = tally.errors.load(Ordering::Relaxed);
    // After warm-up: the first minute (or the first third of a shorter soak), and the
    // VMs running.
    let warm = samples
        .iter()
        .find(|(t, ..)| *t as f64 >= (60.0_f64).min(minutes * 20.0) && *t >= vms_at)
        .copied()
        .unwrap_or(samples[0]);
    let last = *samples.last().unwrap();
    let rss_growth = last.1.saturating_sub(warm.1);
    let fd_growth = last.2.saturating_sub(warm.2);
    println!(
        "soak: {guests} guests x {threads} threads, {:.1} min: {runs} runs, {errors} errors; after warm-up RSS {} -> {} KiB (+{rss_growth}), fds {} -> {}; daemon stopped {}",
        t0.elapsed().as_secs_f64() / 60.0,
        warm.1,
        last.1,
        warm.2,
        last.2,
        if clean { "cleanly" } else { "with an error" }
    );
    // Memory may settle a little; 10 % or 8 MiB, whichever is more, is the bound.
    let rss_ok = rss_growth <= (warm.1 / 10).max(8 << 10);
    if errors > 0 || !clean || !rss_ok || fd_growth > 0 {
        eprintln!("soak: FAILED");
        std::process::exit(1);
    }
}
