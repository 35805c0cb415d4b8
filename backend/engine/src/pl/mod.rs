//! The pl engine: kernels on the programmable logic of a Zynq-class SoC. Bitstreams
//! load through fpga_manager or device-tree overlays, HLS cores are driven through UIO
//! register windows, and data is staged through u-dma-buf buffers (the cores need
//! physically contiguous memory, so this engine copies, once each way).
//!
//! Every path is under [`PlConfig::root`]; tests point it at a folder run by the
//! register-level model in [`model`].

mod dma;
mod fpga;
mod gate;
mod hls;
mod mmap;
pub mod model;
mod sysfs;
mod uio;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use vfpga_proto::{ArgKind, CAP_ENGINE_PL, MAX_ARGS};

use self::dma::{DmaPool, Sync};
use self::gate::Gate;
pub use self::hls::{AP_CTRL, AP_DONE, AP_IDLE, AP_READY, AP_START, GIE, IER, ISR};
use self::sysfs::Root;
use self::uio::Uio;
use crate::{Call, Catalog, Engine, EngineError, EngineInfo, Kernel, Library};

/// How the pl engine finds its hardware.
#[derive(Clone, Debug)]
pub struct PlConfig {
    /// Prefix of every sysfs and /dev path (`/` on a board).
    pub root: PathBuf,
    /// Bitstream library (manifests and bitstream files).
    pub library: Library,
    /// Bitstream to load at start, if any.
    pub bitstream: Option<String>,
    /// fpga_manager instance.
    pub fpga: String,
    /// Longest a bitstream load may take.
    pub load_timeout: Duration,
}

/// What one loaded bitstream provides.
#[derive(Debug)]
struct Loaded {
    catalog: Arc<Catalog>,
    cores: Vec<(String, Mutex<Uio>)>,
    dma: Option<DmaPool>,
}

/// The engine.
#[derive(Debug)]
pub struct PlEngine {
    cfg: PlConfig,
    root: Root,
    state: RwLock<Arc<Loaded>>,
    /// Runs share the fabric, a load has it alone.
    gate: Gate,
}

impl PlEngine {
    /// Starts the engine, loading the configured bitstream if any.
    pub fn new(cfg: PlConfig) -> Result<Self, EngineError> {
        let e = Self {
            root: Root::new(cfg.root.clone()),
            state: RwLock::new(Arc::new(Loaded {
                catalog: Arc::new(Catalog::empty("none", "no bitstream loaded")),
                cores: Vec::new(),
                dma: None,
            })),
            gate: Gate::default(),
            cfg,
        };
        if let Some(b) = e.cfg.bitstream.clone() {
            e.load(&b, false)?;
        }
        Ok(e)
    }

    fn current(&self) -> Arc<Loaded> {
        match self.state.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set(&self, loaded: Arc<Loaded>) {
        match self.state.write() {
            Ok(mut s) => *s = loaded,
            Err(p) => *p.into_inner() = loaded,
        }
    }

    /// Loads bitstream `name` once the runs in flight have ended (runs asked for
    /// meanwhile wait, then see the new catalogue: their old kernels are gone). With
    /// `unless_loaded`, a bitstream found loaded once the fabric is held stays as it is.
    fn load(&self, name: &str, unless_loaded: bool) -> Result<Arc<Catalog>, EngineError> {
        let catalog = self.cfg.library.open(name)?;
        if let Some(k) = catalog.kernels.iter().find(|k| k.core.is_none()) {
            return Err(EngineError::Failed(format!(
                "bitstream {name}: kernel `{}` has no core = {{ uio = ... }} (the pl engine needs one per kernel)",
                k.sig.name
            )));
        }
        let (runs, _) = self.gate.counts();
        if runs > 0 {
            tracing::info!(bitstream = name, runs, "load waits for the runs in flight");
        }
        let _fabric = self.gate.load();
        if unless_loaded {
            let c = self.catalog();
            if c.name == name {
                return Ok(c);
            }
        }
        match self.program(catalog, name) {
            Ok(loaded) => {
                let catalog = loaded.catalog.clone();
                self.set(loaded);
                tracing::info!(
                    bitstream = name,
                    kernels = catalog.kernels.len(),
                    "bitstream loaded on the PL"
                );
                Ok(catalog)
            }
            Err(e) => {
                // The fabric may hold part of the new design: nothing of the old one
                // may run on it (a new generation, so old sessions' kernels are gone).
                self.set(Arc::new(Loaded {
                    catalog: Arc::new(Catalog::empty(
                        "none",
                        &format!("loading {name} failed: {e}"),
                    )),
                    cores: Vec::new(),
                    dma: None,
                }));
                Err(e)
            }
        }
    }

    /// Programs the fabric with `catalog`'s bitstream and opens its cores and buffers
    /// (the caller holds the fabric alone).
    fn program(&self, catalog: Catalog, name: &str) -> Result<Arc<Loaded>, EngineError> {
        let hw = &catalog.hw;
        match (&hw.file, &hw.overlay) {
            (Some(f), None) => {
                fpga::load_with_manager(&self.root, &self.cfg.library.dir, &self.cfg.fpga, f, hw.partial, self.cfg.load_timeout)?
            }
            (None, Some(o)) => fpga::apply_overlay(&self.root, &self.cfg.library.dir, name, o, self.cfg.load_timeout)?,
            _ => {
                return Err(EngineError::Failed(format!(
                    "bitstream {name}: the manifest names neither file (fpga_manager) nor overlay (configfs)"
                )))
            }
        }
        let mut cores: Vec<(String, Mutex<Uio>)> = Vec::new();
        for k in &catalog.kernels {
            let Some(c) = &k.core else { continue };
            if cores.iter().any(|(n, _)| n == &c.uio) {
                continue;
            }
            cores.push((
                c.uio.clone(),
                Mutex::new(Uio::find(&self.root, &c.uio, c.irq)?),
            ));
        }
        let dma = if hw.dma.is_empty() {
            None
        } else {
            Some(DmaPool::open(&self.root, &hw.dma)?)
        };
        Ok(Arc::new(Loaded {
            catalog: Arc::new(catalog),
            cores,
            dma,
        }))
    }
}

impl Engine for PlEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            name: "pl",
            capability: CAP_ENGINE_PL,
            can_load: true,
        }
    }

    fn catalog(&self) -> Arc<Catalog> {
        self.current().catalog.clone()
    }

    fn run(&self, kernel: &Kernel, call: &Call<'_>) -> Result<(), EngineError> {
        // From the generation check to the last byte out, no load touches the fabric:
        // the cores and buffers this run takes are the loaded bitstream's until it ends.
        let _fabric = self.gate.run();
        let loaded = self.current();
        if kernel.generation != loaded.catalog.generation {
            return Err(EngineError::KernelGone(kernel.sig.name.clone()));
        }
        let spec = kernel
            .core
            .as_ref()
            .ok_or(EngineError::Unsupported("kernel has no hardware core"))?;
        let core = loaded
            .cores
            .iter()
            .find(|(n, _)| n == &spec.uio)
            .map(|(_, c)| c)
            .ok_or_else(|| EngineError::Failed(format!("core {} is not open", spec.uio)))?;
        let args = call.args();
        // Buffer arguments, in order, with their DMA sizes.
        let mut bufs = [0usize; MAX_ARGS];
        let mut sizes = [0usize; MAX_ARGS];
        let mut nbufs = 0;
        for (i, a) in args.iter().enumerate() {
            if a.kind != ArgKind::Scalar.raw() {
                bufs[nbufs] = i;
                sizes[nbufs] = call.buf(i)?.len();
                nbufs += 1;
            }
        }
        let pool = loaded.dma.as_ref();
        if nbufs > 0 && pool.is_none() {
            return Err(EngineError::Failed(format!(
                "bitstream {} names no DMA buffers (dma = [...]) but `{}` takes buffers",
                loaded.catalog.name, kernel.sig.name
            )));
        }
        let mut uio = core.lock().unwrap_or_else(|p| p.into_inner());
        let taken = match pool {
            Some(p) => Some(p.take(&sizes[..nbufs])?),
            None => None,
        };
        let mut writes = [(0u32, 0u32); 2 * MAX_ARGS];
        let mut nw = 0;
        let mut push = |w: (u32, u32)| {
            writes[nw] = w;
            nw += 1;
        };
        let mut bi = 0;
        for (i, a) in args.iter().enumerate() {
            let reg = spec.regs.get(i).copied().ok_or(EngineError::BadArgument {
                index: i,
                reason: "no register for this argument",
            })?;
            if a.kind == ArgKind::Scalar.raw() {
                push((reg, low(a.value)));
                if vfpga_proto::ElemType::from_raw(a.ty).is_some_and(|t| t.size() == 8) {
                    push((reg + 4, low(a.value >> 32)));
                }
                continue;
            }
            let (Some(t), Some(p)) = (&taken, pool) else {
                return Err(EngineError::Failed("no DMA buffer".into()));
            };
            let d = p.buf(t.idx[bi]);
            bi += 1;
            let sg = call.buf(i)?;
            if a.kind == ArgKind::In.raw() {
                d.fill_from(&sg)?;
            }
            d.sync(&self.root, Sync::ForDevice, sg.len())?;
            push((reg, low(d.phys)));
            push((reg + 4, low(d.phys >> 32)));
        }
        hls::run(&mut uio, &writes[..nw], spec.irq, spec.timeout)?;
        if let (Some(t), Some(p)) = (&taken, pool) {
            for (k, &i) in bufs[..nbufs].iter().enumerate() {
                if args[i].kind != ArgKind::Out.raw() {
                    continue;
                }
                let d = p.buf(t.idx[k]);
                let sg = call.buf(i)?;
                d.sync(&self.root, Sync::ForCpu, sg.len())?;
                d.drain_into(&sg)?;
            }
        }
        Ok(())
    }

    fn cost(&self, _kernel: &Kernel, call: &Call<'_>) -> u64 {
        // Hardware runs wait on the device: always worth an engine thread.
        let (i, o) = call.io_bytes();
        i.saturating_add(o).saturating_add(1 << 20)
    }

    fn load_bitstream(&self, name: &str) -> Result<Arc<Catalog>, EngineError> {
        self.load(name, false)
    }

    fn ensure_loaded(&self, name: &str) -> Result<Arc<Catalog>, EngineError> {
        let c = self.catalog();
        if c.name == name {
            return Ok(c);
        }
        self.load(name, true)
    }
}

/// The low 32 bits.
fn low(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}
