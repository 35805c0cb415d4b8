//! What a restarted worker resumes from. Under `vfpgad --supervise` every guest has a
//! state file in the supervisor's private folder, made empty by the supervisor for each
//! new frontend connection and mapped by each worker that serves the connection. It
//! holds, in fixed places written with single atomic stores:
//!
//! * per virtqueue, the chains taken from the ring and not yet in the used ring (the
//!   spirit of vhost-user's `INFLIGHT_SHMFD`): the next available position and, per
//!   head, the position it was taken at; a completion writes its head and the used
//!   index it starts from before the used ring, so one torn by the crash is recognised;
//! * the open sessions: the id's salt, and per slot its generation and kernel name.
//!
//! Layout (little-endian `u32` words; the geometry must match or the file is reset):
//!
//! ```text
//! 0   magic "VFPGARS1"      8  version      12 queues      16 queue size
//! 20  sessions              24 salt (0: none)               .. 64 reserved
//! 64  per queue: next avail (bit 31: valid), completing ((head+1)<<16 | used index),
//!     two reserved words, then one word per head: bit 31 in flight, low 16 its position
//! ..  per session slot (80 bytes): state (1 open), generation, bitstream (or
//!     0xffff_ffff), name length, name (64 bytes)
//! ```
//!
//! The file is written only by vfpgad in a folder only it can reach; a reader still
//! takes nothing on trust: every index is checked, a bad name is skipped.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

const MAGIC: [u8; 8] = *b"VFPGARS1";
const VERSION: u32 = 1;
const HEADER: usize = 64;
const QUEUE_WORDS: usize = 4;
const SESSION_BYTES: usize = 80;
const NAME_BYTES: usize = 64;
const VALID: u32 = 1 << 31;
const IN_FLIGHT: u32 = 1 << 31;
const NO_BITSTREAM: u32 = u32::MAX;

/// Offsets of the header's words.
const OFF_VERSION: usize = 8;
const OFF_QUEUES: usize = 12;
const OFF_QUEUE_SIZE: usize = 16;
const OFF_SESSIONS: usize = 20;
const OFF_SALT: usize = 24;

/// The shape of a state file: queues, their size, session slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Virtqueues.
    pub queues: usize,
    /// Entries per virtqueue (the largest size the device accepts).
    pub queue_size: u16,
    /// Session slots.
    pub sessions: usize,
}

impl Geometry {
    fn queue_bytes(&self) -> usize {
        (QUEUE_WORDS + usize::from(self.queue_size)) * 4
    }

    fn queue_offset(&self, q: usize) -> usize {
        HEADER + q * self.queue_bytes()
    }

    fn session_offset(&self, slot: usize) -> usize {
        self.queue_offset(self.queues) + slot * SESSION_BYTES
    }

    fn len(&self) -> usize {
        self.session_offset(self.sessions)
    }
}

/// One guest's state file, mapped shared.
#[derive(Debug)]
pub struct StateFile {
    ptr: *mut u8,
    len: usize,
    geometry: Geometry,
    _file: File,
}

// SAFETY: the mapping is only reached through atomic words and byte copies of session
// records, which are written by one thread at a time (the session table's lock).
unsafe impl Send for StateFile {}
// SAFETY: as above.
unsafe impl Sync for StateFile {}

impl Drop for StateFile {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are the mapping made in `open`, unmapped only here.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

impl StateFile {
    /// Maps the state file at `path` for a device of this geometry. Returns the file
    /// and whether it held state to resume from (an empty, foreign or differently
    /// shaped file is reset).
    pub fn open(path: &Path, geometry: Geometry) -> io::Result<(Arc<Self>, bool)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let len = geometry.len();
        let mut head = [0u8; 24];
        let resumable = file.read_exact_at(&mut head, 0).is_ok()
            && head[..8] == MAGIC
            && word(&head, OFF_VERSION) == VERSION
            && word(&head, OFF_QUEUES) as usize == geometry.queues
            && word(&head, OFF_QUEUE_SIZE) == u32::from(geometry.queue_size)
            && word(&head, OFF_SESSIONS) as usize == geometry.sessions
            && file.metadata()?.len() == len as u64;
        if !resumable {
            // A new file, not this one emptied: a device still finishing its runs may
            // have this one mapped, and a mapping past a file's end faults.
            reset(path)?;
            file = OpenOptions::new().read(true).write(true).open(path)?;
            file.set_len(len as u64)?;
            let mut h = [0u8; 24];
            h[..8].copy_from_slice(&MAGIC);
            put(&mut h, OFF_VERSION, VERSION);
            put(&mut h, OFF_QUEUES, to_u32(geometry.queues));
            put(&mut h, OFF_QUEUE_SIZE, u32::from(geometry.queue_size));
            put(&mut h, OFF_SESSIONS, to_u32(geometry.sessions));
            file.write_all_at(&h, 0)?;
        }
        // SAFETY: a fresh shared mapping of `len` bytes of a file that long; checked
        // for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let state = Arc::new(Self {
            ptr: ptr.cast(),
            len,
            geometry,
            _file: file,
        });
        Ok((state, resumable))
    }

    fn at(&self, off: usize) -> &AtomicU32 {
        assert!(
            off % 4 == 0 && off + 4 <= self.len,
            "state file offset {off}"
        );
        // SAFETY: in bounds (checked above), 4-aligned in a page-aligned mapping that
        // lives as long as `self`; every access to these words is atomic.
        unsafe { AtomicU32::from_ptr(self.ptr.add(off).cast()) }
    }

    /// The log of virtqueue `q`, if the file has one.
    pub fn queue(self: &Arc<Self>, q: usize) -> Option<QueueLog> {
        (q < self.geometry.queues).then(|| QueueLog {
            file: self.clone(),
            q,
        })
    }

    /// The salt of the session ids, if sessions were recorded.
    pub fn salt(&self) -> Option<u32> {
        Some(self.at(OFF_SALT).load(Ordering::Acquire)).filter(|&s| s != 0)
    }

    /// Records the salt of the session ids.
    pub fn set_salt(&self, salt: u32) {
        self.at(OFF_SALT).store(salt, Ordering::Release);
    }

    /// Records an open session in `slot`.
    pub fn session_opened(&self, slot: usize, generation: u16, name: &str, bitstream: Option<u16>) {
        if slot >= self.geometry.sessions || name.len() > NAME_BYTES {
            return;
        }
        let off = self.geometry.session_offset(slot);
        self.at(off).store(0, Ordering::SeqCst);
        self.at(off + 4)
            .store(u32::from(generation), Ordering::Relaxed);
        self.at(off + 8)
            .store(bitstream.map_or(NO_BITSTREAM, u32::from), Ordering::Relaxed);
        self.at(off + 12)
            .store(to_u32(name.len()), Ordering::Relaxed);
        let mut raw = [0u8; NAME_BYTES];
        raw[..name.len()].copy_from_slice(name.as_bytes());
        for (i, w) in raw.chunks_exact(4).enumerate() {
            let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            self.at(off + 16 + i * 4).store(v, Ordering::Relaxed);
        }
        self.at(off).store(1, Ordering::SeqCst);
    }

    /// Records that the session in `slot` closed.
    pub fn session_closed(&self, slot: usize) {
        if slot < self.geometry.sessions {
            self.at(self.geometry.session_offset(slot))
                .store(0, Ordering::SeqCst);
        }
    }

    /// The sessions recorded open: slot, generation, kernel name, bitstream.
    pub fn sessions(&self) -> Vec<(usize, u16, String, Option<u16>)> {
        let mut out = Vec::new();
        for slot in 0..self.geometry.sessions {
            let off = self.geometry.session_offset(slot);
            if self.at(off).load(Ordering::SeqCst) != 1 {
                continue;
            }
            let generation = u16::try_from(self.at(off + 4).load(Ordering::Relaxed)).ok();
            let bitstream = match self.at(off + 8).load(Ordering::Relaxed) {
                NO_BITSTREAM => Some(None),
                b => u16::try_from(b).ok().map(Some),
            };
            let n = self.at(off + 12).load(Ordering::Relaxed) as usize;
            let mut raw = [0u8; NAME_BYTES];
            for (i, w) in raw.chunks_exact_mut(4).enumerate() {
                w.copy_from_slice(
                    &self
                        .at(off + 16 + i * 4)
                        .load(Ordering::Relaxed)
                        .to_le_bytes(),
                );
            }
            let name = raw
                .get(..n)
                .and_then(|b| std::str::from_utf8(b).ok())
                .filter(|s| !s.is_empty());
            if let (Some(g), Some(b), Some(name)) = (generation, bitstream, name) {
                out.push((slot, g, name.to_owned(), b));
            }
        }
        out
    }
}

/// Makes the state file at `path` a new, empty one (a new frontend is a new device,
/// with nothing to resume). The old file is unlinked, not emptied: a daemon still
/// finishing the old connection's runs keeps writing to its mapping harmlessly.
pub fn reset(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

/// Where virtqueue `q`'s driver has got to, as the worker serving `path` last recorded
/// it: the next available position, if the queue was in use. Read by the supervisor to
/// restart the ring there rather than where the frontend first set it.
pub fn next_avail(path: &Path, q: usize) -> Option<u16> {
    let file = File::open(path).ok()?;
    let mut head = [0u8; 24];
    file.read_exact_at(&mut head, 0).ok()?;
    if head[..8] != MAGIC || word(&head, OFF_VERSION) != VERSION {
        return None;
    }
    let geometry = Geometry {
        queues: word(&head, OFF_QUEUES) as usize,
        queue_size: u16::try_from(word(&head, OFF_QUEUE_SIZE)).ok()?,
        sessions: word(&head, OFF_SESSIONS) as usize,
    };
    if q >= geometry.queues {
        return None;
    }
    let mut raw = [0u8; 4];
    file.read_exact_at(&mut raw, geometry.queue_offset(q) as u64)
        .ok()?;
    let v = u32::from_le_bytes(raw);
    (v & VALID != 0).then_some(low16(v))
}

/// One virtqueue's in-flight log.
#[derive(Clone, Debug)]
pub struct QueueLog {
    file: Arc<StateFile>,
    q: usize,
}

/// What a queue resumes with.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The next available position to take chains from.
    pub next_avail: Option<u16>,
    /// Heads of the chains in flight at the crash, oldest first: to run again.
    pub heads: Vec<u16>,
}

impl QueueLog {
    fn base(&self) -> usize {
        self.file.geometry.queue_offset(self.q)
    }

    fn size(&self) -> u16 {
        self.file.geometry.queue_size
    }

    fn head_word(&self, head: u16) -> Option<&AtomicU32> {
        (head < self.size()).then(|| {
            self.file
                .at(self.base() + (QUEUE_WORDS + usize::from(head)) * 4)
        })
    }

    /// Chain `head` was taken at available position `pos`. Its head first, then the
    /// position: a crash between the two leaves the chain to be taken again, and
    /// [`QueueLog::recover`] does not run it twice.
    pub fn taken(&self, head: u16, pos: u16) {
        if let Some(w) = self.head_word(head) {
            w.store(IN_FLIGHT | u32::from(pos), Ordering::SeqCst);
        }
        self.file
            .at(self.base())
            .store(VALID | u32::from(pos.wrapping_add(1)), Ordering::SeqCst);
    }

    /// Chain `head` is about to go into the used ring at used index `used_idx`.
    pub fn completing(&self, head: u16, used_idx: u16) {
        let v = (u32::from(head) + 1) << 16 | u32::from(used_idx);
        self.file.at(self.base() + 4).store(v, Ordering::SeqCst);
    }

    /// Chain `head` is in the used ring.
    pub fn completed(&self, head: u16) {
        if let Some(w) = self.head_word(head) {
            w.store(0, Ordering::SeqCst);
        }
        self.file.at(self.base() + 4).store(0, Ordering::SeqCst);
    }

    /// The frontend stopped or reset the queue: nothing of it is in flight any more,
    /// and its next start is a new ring. (Stops and resets are never replayed to a new
    /// worker, so every one a worker sees is the frontend's.)
    pub fn clear(&self) {
        for w in 0..QUEUE_WORDS + usize::from(self.size()) {
            self.file.at(self.base() + w * 4).store(0, Ordering::SeqCst);
        }
    }

    /// Reads what the previous worker left, given the used index the driver sees now,
    /// and leaves the log describing exactly the chains to run again.
    pub fn recover(&self, used_idx: u16) -> Recovery {
        let base = self.base();
        let next = self.file.at(base).load(Ordering::SeqCst);
        let completing = self.file.at(base + 4).swap(0, Ordering::SeqCst);
        if next & VALID == 0 {
            for h in 0..self.size() {
                if let Some(w) = self.head_word(h) {
                    w.store(0, Ordering::SeqCst);
                }
            }
            return Recovery::default();
        }
        let next = low16(next);
        if completing != 0 {
            // The used index moved past where the completion started: it got there.
            let head = u16::try_from((completing >> 16).wrapping_sub(1)).unwrap_or(u16::MAX);
            if low16(completing) != used_idx {
                if let Some(w) = self.head_word(head) {
                    w.store(0, Ordering::SeqCst);
                }
            }
        }
        let mut heads: Vec<(u16, u16)> = Vec::new();
        for h in 0..self.size() {
            let Some(w) = self.head_word(h) else { break };
            let v = w.load(Ordering::SeqCst);
            if v & IN_FLIGHT == 0 {
                continue;
            }
            let age = next.wrapping_sub(low16(v));
            if age == 0 || age > self.size() {
                // Taken again from the ring (or nonsense): not to be run from here.
                w.store(0, Ordering::SeqCst);
                continue;
            }
            heads.push((age, h));
        }
        heads.sort_unstable_by_key(|&(age, _)| std::cmp::Reverse(age));
        Recovery {
            next_avail: Some(next),
            heads: heads.into_iter().map(|(_, h)| h).collect(),
        }
    }
}

fn word(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn put(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn to_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn low16(v: u32) -> u16 {
    u16::try_from(v & 0xffff).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Geometry = Geometry {
        queues: 2,
        queue_size: 8,
        sessions: 4,
    };

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("vfpga-resume-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    #[test]
    fn chains_in_flight_survive_and_finished_ones_do_not() {
        let p = tmp("flight");
        let (f, resumed) = StateFile::open(&p, G).unwrap();
        assert!(!resumed, "a new file has nothing to resume");
        let log = f.queue(1).unwrap();
        // Positions 0..4 taken as heads 3, 5, 0, 7; 5 completed; 0 torn after the
        // used index moved (from 1 to 2); 7 torn before it moved.
        for (pos, head) in [(0u16, 3u16), (1, 5), (2, 0), (3, 7)] {
            log.taken(head, pos);
        }
        log.completing(5, 0);
        log.completed(5);
        log.completing(0, 1);
        drop((log, f));
        let (f, resumed) = StateFile::open(&p, G).unwrap();
        assert!(resumed);
        let r = f.queue(1).unwrap().recover(2);
        assert_eq!(r.next_avail, Some(4));
        assert_eq!(r.heads, vec![3, 7], "oldest first, the finished ones gone");
        assert_eq!(next_avail(&p, 1), Some(4));
        assert_eq!(next_avail(&p, 0), None, "queue 0 never used");
        assert_eq!(f.queue(0).unwrap().recover(0), Recovery::default());
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_chain_logged_but_not_counted_is_taken_again_not_rerun() {
        let p = tmp("torn-take");
        let (f, _) = StateFile::open(&p, G).unwrap();
        let log = f.queue(0).unwrap();
        log.taken(2, 0);
        // The crash came between the head's word and the position's: position 1's
        // head is marked but the next position still says 1.
        f.at(f.geometry.queue_offset(0) + (QUEUE_WORDS + 6) * 4)
            .store(IN_FLIGHT | 1, Ordering::SeqCst);
        let r = log.recover(0);
        assert_eq!(r.next_avail, Some(1));
        assert_eq!(r.heads, vec![2]);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_stop_clears_the_log() {
        let p = tmp("stop");
        let (f, _) = StateFile::open(&p, G).unwrap();
        f.queue(0).unwrap().taken(1, 0);
        f.queue(1).unwrap().taken(1, 0);
        drop(f);
        let (f, _) = StateFile::open(&p, G).unwrap();
        f.queue(0).unwrap().clear();
        assert_eq!(next_avail(&p, 0), None);
        assert_eq!(f.queue(0).unwrap().recover(0), Recovery::default());
        assert_eq!(next_avail(&p, 1), Some(1), "other queues keep theirs");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_reset_leaves_a_mapping_in_use_writable() {
        let p = tmp("reset");
        let (f, _) = StateFile::open(&p, G).unwrap();
        f.queue(0).unwrap().taken(1, 0);
        reset(&p).unwrap();
        // Emptying the file in place would make these writes fault (SIGBUS).
        f.queue(0).unwrap().taken(2, 1);
        f.queue(0).unwrap().completed(2);
        assert_eq!(next_avail(&p, 0), None, "the new file holds nothing");
        let (g, resumed) = StateFile::open(&p, G).unwrap();
        assert!(!resumed);
        // And a reset by the daemon itself (another geometry) spares the old mapping.
        let (_, resumed) = StateFile::open(&p, Geometry { queues: 3, ..G }).unwrap();
        assert!(!resumed);
        g.queue(1).unwrap().taken(3, 0);
        drop((f, g));
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn sessions_round_trip() {
        let p = tmp("sessions");
        let (f, _) = StateFile::open(&p, G).unwrap();
        assert_eq!(f.salt(), None);
        f.set_salt(0x1234_5679);
        f.session_opened(0, 3, "vadd_u32", None);
        f.session_opened(2, 9, "mathlib/mmult_f32", Some(1));
        f.session_opened(1, 1, "gone", None);
        f.session_closed(1);
        f.session_opened(9, 1, "out of range", None);
        drop(f);
        let (f, _) = StateFile::open(&p, G).unwrap();
        assert_eq!(f.salt(), Some(0x1234_5679));
        assert_eq!(
            f.sessions(),
            vec![
                (0, 3, "vadd_u32".to_owned(), None),
                (2, 9, "mathlib/mmult_f32".to_owned(), Some(1))
            ]
        );
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn hostile_or_foreign_files_are_reset_or_ignored() {
        let p = tmp("hostile");
        // Not a state file: reset, nothing resumed.
        std::fs::write(&p, b"garbage that is not a state file").unwrap();
        let (f, resumed) = StateFile::open(&p, G).unwrap();
        assert!(!resumed);
        assert!(f.sessions().is_empty());
        drop(f);
        // Another geometry: reset.
        let other = Geometry {
            queue_size: 16,
            ..G
        };
        let (_, resumed) = StateFile::open(&p, other).unwrap();
        assert!(!resumed);
        // Right header, nonsense words: every head out of range, positions wild, a
        // completion naming a head beyond the queue, names too long or not UTF-8.
        let (f, _) = StateFile::open(&p, G).unwrap();
        for off in (HEADER..f.len).step_by(4) {
            f.at(off).store(0xffff_ffff, Ordering::Relaxed);
        }
        let s0 = G.session_offset(0);
        f.at(s0).store(1, Ordering::Relaxed);
        f.at(s0 + 12).store(2, Ordering::Relaxed);
        // A completion word naming no head (head + 1 = 0) for queue 1.
        f.at(G.queue_offset(1) + 4).store(5, Ordering::Relaxed);
        drop(f);
        let (f, resumed) = StateFile::open(&p, G).unwrap();
        assert!(resumed);
        let r = f.queue(0).unwrap().recover(0);
        assert!(r.heads.len() <= 8);
        let r = f.queue(1).unwrap().recover(0);
        assert!(r.heads.len() <= 8);
        assert!(f.sessions().is_empty(), "no valid record among the garbage");
        assert!(f.queue(2).is_none());
        // Truncated file: reset.
        drop(f);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(10)
            .unwrap();
        assert_eq!(next_avail(&p, 0), None);
        let (_, resumed) = StateFile::open(&p, G).unwrap();
        assert!(!resumed);
        let _ = std::fs::remove_file(&p);
    }
}
