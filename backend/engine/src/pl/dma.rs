//! u-dma-buf: physically contiguous buffers the HLS cores read and write, with explicit
//! cache syncs around each transfer.

use std::sync::Mutex;

use super::mmap::Mmap;
use super::sysfs::Root;
use crate::{EngineError, SgBuf};

/// One u-dma-buf buffer.
#[derive(Debug)]
pub struct DmaBuf {
    /// Device name (`udmabufN`).
    pub name: String,
    /// Physical (bus) address the core sees.
    pub phys: u64,
    /// Size in bytes.
    pub size: usize,
    mem: Mmap,
}

/// Direction of a cache sync.
#[derive(Clone, Copy, Debug)]
pub enum Sync {
    /// Before the device reads what the CPU wrote.
    ForDevice,
    /// Before the CPU reads what the device wrote.
    ForCpu,
}

impl DmaBuf {
    /// Opens buffer `name`.
    pub fn open(root: &Root, name: &str) -> Result<Self, EngineError> {
        let class = format!("sys/class/u-dma-buf/{name}");
        let phys = root.read_u64(&format!("{class}/phys_addr"))?;
        let size = root.read_u64(&format!("{class}/size"))?;
        let size = usize::try_from(size)
            .map_err(|_| EngineError::Failed(format!("{name}: size {size} too large")))?;
        let mem = Mmap::open(&root.path(&format!("dev/{name}")), size, 0)?;
        Ok(Self {
            name: name.to_owned(),
            phys,
            size,
            mem,
        })
    }

    /// Syncs the first `len` bytes.
    pub fn sync(&self, root: &Root, dir: Sync, len: usize) -> Result<(), EngineError> {
        let class = format!("sys/class/u-dma-buf/{}", self.name);
        let (direction, file) = match dir {
            Sync::ForDevice => ("1", "sync_for_device"),
            Sync::ForCpu => ("2", "sync_for_cpu"),
        };
        root.write(&format!("{class}/sync_offset"), "0")?;
        root.write(&format!("{class}/sync_size"), &len.to_string())?;
        root.write(&format!("{class}/sync_direction"), direction)?;
        root.write(&format!("{class}/{file}"), "1")
    }

    /// Copies a guest buffer into the start of this one.
    pub fn fill_from(&self, src: &SgBuf<'_>) -> Result<(), EngineError> {
        let n = src.len();
        if n > self.size {
            return Err(EngineError::Busy);
        }
        // SAFETY: the first `n <= size` bytes of the mapping, which this engine owns for
        // the run (the core is idle until started).
        let dst = unsafe { std::slice::from_raw_parts_mut(self.mem.ptr(), n) };
        if src.copy_to_slice(dst) {
            Ok(())
        } else {
            Err(EngineError::Failed(format!(
                "{}: copy-in length mismatch",
                self.name
            )))
        }
    }

    /// Copies the start of this buffer into a guest buffer.
    pub fn drain_into(&self, dst: &SgBuf<'_>) -> Result<(), EngineError> {
        let n = dst.len();
        if n > self.size {
            return Err(EngineError::Busy);
        }
        // SAFETY: the first `n <= size` bytes of the mapping; the core has finished.
        let src = unsafe { std::slice::from_raw_parts(self.mem.ptr(), n) };
        if dst.copy_from_slice(src) {
            Ok(())
        } else {
            Err(EngineError::Failed(format!(
                "{}: copy-out length mismatch",
                self.name
            )))
        }
    }
}

/// The buffers of a bitstream, handed out per run.
#[derive(Debug)]
pub struct DmaPool {
    bufs: Vec<DmaBuf>,
    busy: Mutex<Vec<bool>>,
}

/// Buffers taken for one run; returned on drop.
#[derive(Debug)]
pub struct Taken<'p> {
    pool: &'p DmaPool,
    /// Indices into the pool, one per requested size.
    pub idx: Vec<usize>,
}

impl DmaPool {
    /// Opens every named buffer.
    pub fn open(root: &Root, names: &[String]) -> Result<Self, EngineError> {
        let bufs = names
            .iter()
            .map(|n| DmaBuf::open(root, n))
            .collect::<Result<Vec<_>, _>>()?;
        let n = bufs.len();
        Ok(Self {
            bufs,
            busy: Mutex::new(vec![false; n]),
        })
    }

    /// Buffer `i`.
    pub fn buf(&self, i: usize) -> &DmaBuf {
        &self.bufs[i]
    }

    /// Takes one free buffer per size (smallest that fits); `Busy` if they are not all
    /// available, `Unsupported`-style failure if one can never fit.
    pub fn take(&self, sizes: &[usize]) -> Result<Taken<'_>, EngineError> {
        let largest = self.bufs.iter().map(|b| b.size).max().unwrap_or(0);
        if let Some(s) = sizes.iter().find(|&&s| s > largest) {
            return Err(EngineError::Failed(format!(
                "a {s}-byte buffer does not fit any DMA buffer (largest {largest} bytes)"
            )));
        }
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let mut idx = Vec::with_capacity(sizes.len());
        for &s in sizes {
            let pick = (0..self.bufs.len())
                .filter(|&i| !busy[i] && !idx.contains(&i) && self.bufs[i].size >= s)
                .min_by_key(|&i| self.bufs[i].size);
            match pick {
                Some(i) => idx.push(i),
                None => return Err(EngineError::Busy),
            }
        }
        for &i in &idx {
            busy[i] = true;
        }
        Ok(Taken { pool: self, idx })
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        let mut busy = self.pool.busy.lock().unwrap_or_else(|p| p.into_inner());
        for &i in &self.idx {
            busy[i] = false;
        }
    }
}
