//! A register-level **model** of the board the pl engine drives: Vitis HLS cores behind
//! UIO, u-dma-buf buffers and fpga_manager. It is not hardware and does not pretend to
//! be: it lays out the sysfs and /dev files under a test folder, and its threads play
//! the hardware's part — an HLS core watches `ap_start` in its register file, reads its
//! argument registers, computes with the reference (sim) kernels on the DMA buffer
//! files, sets `ap_done`/`ap_idle` and raises its interrupt.
//!
//! Its register map is its own (the Vitis HLS convention: arguments from 0x10, a
//! pointer takes lo, hi and a reserved word, a 32-bit scalar a word and a reserved
//! word), so a manifest with wrong offsets makes it see wrong register writes; and it
//! can be told to fail ([`Faults`]) so tests prove the engine notices.
//!
//! Differences from hardware, by necessity: the register "device" is a plain file, so
//! the interrupt line is a unix socket beside it (`dev/uioN.irq`) carrying the same
//! enable-write / count-read protocol; `ap_done` is not clear-on-read; fpga_manager's
//! `firmware` and `state` are named pipes the model serves (see loader.rs).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use vfpga_proto::{ArgEntry, ArgKind, KernelSig, MAX_ARGS};

use super::hls::{AP_CTRL, AP_DONE, AP_IDLE, AP_READY, AP_START, GIE, IER, ISR};
use super::mmap::Mmap;
use crate::sim::SimEngine;
use crate::{Call, Engine, SegStream, SgBuf};
pub use board::ModelBoard;
use loader::Loader;

mod board;
mod loader;

/// Size of each core's register window.
pub const REG_WINDOW: usize = 0x1000;

/// What the model should get wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// fpga_manager ends a load in this state instead of "operating".
    pub fpga_state: Option<String>,
    /// Cores never finish.
    pub hang: bool,
    /// Cores (by UIO name) that start a run, report `held`, and compute it only once
    /// they are off this list again: a run in flight for as long as a test needs,
    /// whatever the machine's speed.
    pub hold: Vec<String>,
    /// Cores flip a bit of their first output.
    pub corrupt: bool,
}

/// One modelled HLS core.
#[derive(Clone, Debug)]
pub struct CoreSpec {
    /// UIO device name.
    pub uio: String,
    /// Which reference kernel it computes (a sim implementation name).
    pub implements: String,
}

/// What to model.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    /// HLS cores, one UIO device each (uio0, uio1, ... in order).
    pub cores: Vec<CoreSpec>,
    /// u-dma-buf buffers: (name, size).
    pub dma: Vec<(String, usize)>,
}

/// The register offsets the model's core for `sig` decodes (Vitis HLS convention).
pub fn hls_register_map(sig: &KernelSig) -> Vec<u32> {
    let mut off = 0x10;
    sig.args
        .iter()
        .map(|a| {
            let here = off;
            off += match (a.kind, a.ty.size()) {
                (ArgKind::Scalar, 8) => 0xc,
                (ArgKind::Scalar, _) => 0x8,
                _ => 0xc,
            };
            here
        })
        .collect()
}

/// A running model. Dropping it stops its threads.
#[derive(Debug)]
pub struct HlsModel {
    root: PathBuf,
    stop: Arc<AtomicBool>,
    faults: Arc<Mutex<Faults>>,
    events: Arc<Mutex<Vec<String>>>,
    runs: Arc<AtomicU64>,
    done: Arc<Mutex<Vec<String>>>,
    program_us: Arc<AtomicU64>,
    programmed: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Clone)]
struct Shared {
    stop: Arc<AtomicBool>,
    faults: Arc<Mutex<Faults>>,
    events: Arc<Mutex<Vec<String>>>,
    runs: Arc<AtomicU64>,
    /// The cores (UIO names) whose runs completed, in order (the first 100 000).
    done: Arc<Mutex<Vec<String>>>,
    /// How long programming the fabric takes, in microseconds.
    program_us: Arc<AtomicU64>,
    /// Times the fabric was programmed: a run that sees it change between its start and
    /// its end was cut short by the reprogramming, as on hardware.
    programmed: Arc<AtomicU64>,
}

impl Shared {
    fn event(&self, e: String) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e);
    }
    fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn write(p: &Path, v: &str) -> std::io::Result<()> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(p, v)
}

/// Fake physical addresses: the first buffer below 4 GiB, the next ones above, so both
/// halves of 64-bit address registers matter.
fn phys_base(i: usize) -> u64 {
    if i == 0 {
        0x3800_0000
    } else {
        0x1_0000_0000 + (i as u64) * 0x1000_0000
    }
}

impl HlsModel {
    /// Lays out the files under `root` and starts the model's threads.
    pub fn start(root: &Path, spec: &ModelSpec) -> std::io::Result<Self> {
        let shared = Shared {
            stop: Arc::new(AtomicBool::new(false)),
            faults: Arc::new(Mutex::new(Faults::default())),
            events: Arc::new(Mutex::new(Vec::new())),
            runs: Arc::new(AtomicU64::new(0)),
            done: Arc::new(Mutex::new(Vec::new())),
            program_us: Arc::new(AtomicU64::new(0)),
            programmed: Arc::new(AtomicU64::new(0)),
        };
        let fpga = root.join("sys/class/fpga_manager/fpga0");
        write(&fpga.join("name"), "vfpga register-level model\n")?;
        write(&fpga.join("flags"), "0\n")?;
        std::fs::create_dir_all(root.join("lib/firmware"))?;
        std::fs::create_dir_all(root.join("sys/kernel/config/device-tree/overlays"))?;
        std::fs::create_dir_all(root.join("dev"))?;
        let mut dma = Vec::new();
        for (i, (name, size)) in spec.dma.iter().enumerate() {
            let class = root.join("sys/class/u-dma-buf").join(name);
            write(&class.join("phys_addr"), &format!("{:#x}\n", phys_base(i)))?;
            write(&class.join("size"), &format!("{size}\n"))?;
            for f in [
                "sync_offset",
                "sync_size",
                "sync_direction",
                "sync_for_cpu",
                "sync_for_device",
            ] {
                write(&class.join(f), "0\n")?;
            }
            let dev = root.join("dev").join(name);
            std::fs::File::create(&dev)?.set_len(*size as u64)?;
            let map =
                Mmap::open(&dev, *size, 0).map_err(|e| std::io::Error::other(e.to_string()))?;
            dma.push((phys_base(i), *size, map));
        }
        let dma = Arc::new(dma);
        let mut threads = Vec::new();
        let reference =
            Arc::new(SimEngine::new(None).map_err(|e| std::io::Error::other(e.to_string()))?);
        for (i, core) in spec.cores.iter().enumerate() {
            let class = root.join(format!("sys/class/uio/uio{i}"));
            write(&class.join("name"), &format!("{}\n", core.uio))?;
            write(
                &class.join("maps/map0/addr"),
                &format!("{:#x}\n", 0x4000_0000 + i * 0x10000),
            )?;
            write(&class.join("maps/map0/size"), &format!("{REG_WINDOW:#x}\n"))?;
            let dev = root.join(format!("dev/uio{i}"));
            std::fs::File::create(&dev)?.set_len(REG_WINDOW as u64)?;
            let regs = Mmap::open(&dev, REG_WINDOW, 0)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            regs.write32(AP_CTRL, AP_IDLE);
            let sock = root.join(format!("dev/uio{i}.irq"));
            let _ = std::fs::remove_file(&sock);
            let listener = UnixListener::bind(&sock)?;
            listener.set_nonblocking(true)?;
            let sig = reference
                .catalog()
                .kernels
                .iter()
                .find(|k| k.sim.as_deref() == Some(core.implements.as_str()))
                .map(|k| k.sig.clone())
                .ok_or_else(|| {
                    std::io::Error::other(format!("no reference kernel {}", core.implements))
                })?;
            let ctx = CoreCtx {
                name: format!("uio{i} ({})", core.uio),
                uio: core.uio.clone(),
                regs,
                listener,
                sig,
                reference: reference.clone(),
                dma: dma.clone(),
                shared: shared.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("model-uio{i}"))
                    .spawn(move || ctx.run())?,
            );
        }
        let cores = (0..spec.cores.len())
            .map(|i| Mmap::open(&root.join(format!("dev/uio{i}")), REG_WINDOW, 0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let loader = Loader::new(root, &fpga, shared.clone(), cores)?;
        threads.push(
            std::thread::Builder::new()
                .name("model-fpga".into())
                .spawn(move || loader.run())?,
        );
        Ok(Self {
            root: root.to_owned(),
            stop: shared.stop,
            faults: shared.faults,
            events: shared.events,
            runs: shared.runs,
            done: shared.done,
            program_us: shared.program_us,
            programmed: shared.programmed,
            threads,
        })
    }

    /// The folder the model lives in (the engine's root).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Sets what the model gets wrong from now on.
    pub fn set_faults(&self, f: Faults) {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = f;
    }

    /// What the model noticed (bad register writes, hangs), in order.
    pub fn events(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits up to `timeout` for an event containing `what`; the events seen if none came.
    pub fn wait_event(&self, what: &str, timeout: Duration) -> Result<String, Vec<String>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let events = self.events();
            if let Some(e) = events.iter().find(|e| e.contains(what)) {
                return Ok(e.clone());
            }
            if std::time::Instant::now() >= deadline {
                return Err(events);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Completed core runs.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Makes programming the fabric take `t` from now on (a load answers only then), as
    /// a full bitstream takes tens of milliseconds on a Zynq-7000.
    pub fn set_program_time(&self, t: Duration) {
        self.program_us.store(
            u64::try_from(t.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Times the fabric was programmed (loads that reached the fabric).
    pub fn programmed(&self) -> u64 {
        self.programmed.load(Ordering::Acquire)
    }

    /// The cores (UIO names) whose runs completed, in the order they did (the first
    /// 100 000): the order the engine fed them, as a logic analyser would see it.
    pub fn completions(&self) -> Vec<String> {
        self.done.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for HlsModel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One HLS core.
struct CoreCtx {
    name: String,
    uio: String,
    regs: Mmap,
    listener: UnixListener,
    sig: KernelSig,
    reference: Arc<SimEngine>,
    dma: Arc<Vec<(u64, usize, Mmap)>>,
    shared: Shared,
}

impl CoreCtx {
    /// Takes a new connection to the interrupt socket and every enable write made on it
    /// so far (the last one counts).
    fn take_irq_writes(&self, irq: &mut Option<UnixStream>, armed: &mut bool) {
        if let Ok((s, _)) = self.listener.accept() {
            let _ = s.set_nonblocking(true);
            *irq = Some(s);
        }
        if let Some(s) = irq {
            let mut b = [0u8; 4];
            while let Ok(4) = s.read(&mut b) {
                *armed = u32::from_ne_bytes(b) != 0;
            }
        }
    }

    fn run(self) {
        let mut irq: Option<UnixStream> = None;
        let mut armed = false;
        let mut count = 0u32;
        let map = hls_register_map(&self.sig);
        while !self.shared.stop.load(Ordering::Relaxed) {
            self.take_irq_writes(&mut irq, &mut armed);
            let ctrl = self.regs.read32(AP_CTRL).unwrap_or(0);
            if ctrl & AP_START == 0 {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            // The engine enables the interrupt before it sets ap_start: both may have
            // happened since the look above, so look again now that the start is seen.
            self.take_irq_writes(&mut irq, &mut armed);
            self.regs.write32(AP_CTRL, 0);
            let fabric = self.shared.programmed.load(Ordering::Acquire);
            let held = || self.shared.faults().hold.contains(&self.uio);
            if held() {
                self.shared
                    .event(format!("{}: held (fault injected)", self.name));
                while held() && !self.shared.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            if self.shared.programmed.load(Ordering::Acquire) != fabric {
                // Reprogrammed while held (a new daemon loading its bitstream after the
                // old one died): the core was reset before it wrote anything, and writes
                // nothing now into buffers the new daemon may be using.
                self.shared.event(format!(
                    "{}: the fabric was reprogrammed during a run: the run is lost",
                    self.name
                ));
                continue;
            }
            if self.shared.faults().hang {
                self.shared.event(format!(
                    "{}: hang (fault injected): started, never done",
                    self.name
                ));
                continue;
            }
            let computed = self.compute(&map);
            if self.shared.programmed.load(Ordering::Acquire) != fabric {
                // The core was reset under this run: it never finishes, its buffers
                // hold whatever it had written.
                self.shared.event(format!(
                    "{}: the fabric was reprogrammed during a run: the run is lost",
                    self.name
                ));
                continue;
            }
            match computed {
                Ok(()) => {
                    self.shared.runs.fetch_add(1, Ordering::Relaxed);
                    {
                        let mut done = self.shared.done.lock().unwrap_or_else(|p| p.into_inner());
                        if done.len() < 100_000 {
                            done.push(self.uio.clone());
                        }
                    }
                    self.regs.write32(ISR, 1);
                    self.regs.write32(AP_CTRL, AP_DONE | AP_IDLE | AP_READY);
                    let enabled = self.regs.read32(GIE).unwrap_or(0) & 1 != 0
                        && self.regs.read32(IER).unwrap_or(0) & 1 != 0;
                    if enabled && armed {
                        count += 1;
                        if let Some(s) = &mut irq {
                            let _ = s.write_all(&count.to_ne_bytes());
                        }
                        armed = false;
                    }
                }
                // A core given nonsense does not finish: the engine must time out.
                Err(e) => self.shared.event(format!("{}: {e}", self.name)),
            }
        }
    }

    /// Reads the argument registers and computes with the reference kernel.
    fn compute(&self, map: &[u32]) -> Result<(), String> {
        let reg = |off: u32| self.regs.read32(off as usize).unwrap_or(0);
        let mut scalars = [0u64; MAX_ARGS];
        for (i, a) in self.sig.args.iter().enumerate() {
            if a.kind == ArgKind::Scalar {
                let lo = u64::from(reg(map[i]));
                scalars[i] = if a.ty.size() == 8 {
                    lo | u64::from(reg(map[i] + 4)) << 32
                } else {
                    lo
                };
            }
        }
        let mut entries = [ArgEntry::default(); MAX_ARGS];
        let mut streams: Vec<SegStream> = Vec::new();
        let mut places: HashMap<usize, usize> = HashMap::new();
        for (i, a) in self.sig.args.iter().enumerate() {
            if a.kind == ArgKind::Scalar {
                entries[i] = ArgEntry::scalar(a.ty, scalars[i]);
                continue;
            }
            let len = self.sig.buffer_bytes(i, &scalars).ok_or_else(|| {
                format!("argument `{}`: size overflows with these scalars", a.name)
            })?;
            let addr = u64::from(reg(map[i])) | u64::from(reg(map[i] + 4)) << 32;
            let (base, _, mem) = self
                .dma
                .iter()
                .find(|(base, size, _)| addr >= *base && addr.saturating_add(len) <= base + *size as u64)
                .ok_or_else(|| {
                    format!(
                        "register write error: argument `{}` at {addr:#x} ({len} bytes) is not inside any DMA buffer",
                        a.name
                    )
                })?;
            let off = usize::try_from(addr - base).map_err(|_| "offset".to_owned())?;
            let mut s = SegStream::with_capacity(1);
            // SAFETY: `off + len` lies inside the buffer's mapping (checked above).
            s.push(
                unsafe { mem.ptr().add(off) },
                usize::try_from(len).map_err(|_| "length".to_owned())?,
            );
            places.insert(i, streams.len());
            streams.push(s);
            entries[i] = match a.kind {
                ArgKind::In => ArgEntry::input(a.ty, len),
                _ => ArgEntry::output(a.ty, len),
            };
        }
        let n = self.sig.args.len();
        self.sig
            .check_call(&entries[..n])
            .map_err(|e| format!("arguments rejected: {e}"))?;
        let mut bufs: [Option<SgBuf<'_>>; MAX_ARGS] = [None; MAX_ARGS];
        for (&i, &si) in &places {
            let s = &streams[si];
            // SAFETY: the streams map the model's own DMA files, alive for this call.
            bufs[i] = unsafe { SgBuf::new(s.segs(), 0, usize::try_from(s.total()).unwrap_or(0)) };
        }
        let kernel = self
            .reference
            .catalog()
            .kernels
            .iter()
            .find(|k| k.sig.name == self.sig.name)
            .cloned()
            .ok_or("reference kernel vanished")?;
        self.reference
            .run(&kernel, &Call::new(&entries[..n], &bufs))
            .map_err(|e| format!("reference kernel refused: {e}"))?;
        if self.shared.faults().corrupt {
            if let Some(i) = self.sig.args.iter().position(|a| a.kind == ArgKind::Out) {
                if let Some(b) = bufs[i] {
                    let v: u8 = b.get(0).unwrap_or(0);
                    b.set(0, v ^ 1);
                }
            }
        }
        Ok(())
    }
}
