//! [`CrashSim`]: a backend that knows what a power failure would leave behind.
//!
//! It keeps two images: the current contents, which every read sees, and the durable contents,
//! which only change when a flushed line is fenced. A flush snapshots the lines it covers; the
//! next fence makes those snapshots durable. A line written after its flush stays dirty, because
//! real hardware may or may not have written the newer contents back.
//!
//! Fences are counted. A test arms a crash at fence `k`; just before fence `k` takes effect the
//! simulator captures the crash image: the durable image plus, for every line that is dirty or
//! flushed-but-unfenced, either its current contents or nothing (kept or dropped), chosen by a
//! seeded generator so that every crash is reproducible. Running a deterministic workload once
//! per `k` therefore crashes it at every fence.
//!
//! All operations take one mutex: this backend is for tests, where clarity beats speed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Mutex;

use super::{Backend, check_range, check_word};
use crate::constants::LINE;

/// What happens to lines that were written but not yet durable when the crash strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every such line is lost.
    DropUnflushed,
    /// Every such line made it to media.
    KeepUnflushed,
    /// Each such line is kept or lost at random (seeded).
    Random { seed: u64 },
}

/// Counters of the simulator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashSimStats {
    pub fences: u64,
    pub flushes: u64,
    pub lines_made_durable: u64,
}

/// The crash-simulating backend.
pub struct CrashSim {
    len: u64,
    state: Mutex<State>,
}

struct State {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Lines whose current contents may differ from the durable image.
    dirty: BTreeSet<u64>,
    /// Lines flushed since the last fence, with the contents the flush saw.
    flushed: BTreeMap<u64, [u8; LINE as usize]>,
    stats: CrashSimStats,
    armed: Option<(u64, CrashMode)>,
    captured: Option<Vec<u8>>,
}

impl CrashSim {
    /// A zeroed simulator of `len` bytes (rounded up to a line); all zeros are durable.
    pub fn new(len: u64) -> CrashSim {
        let len = len.div_ceil(LINE) * LINE;
        CrashSim {
            len,
            state: Mutex::new(State {
                current: vec![0; len as usize],
                durable: vec![0; len as usize],
                dirty: BTreeSet::new(),
                flushed: BTreeMap::new(),
                stats: CrashSimStats::default(),
                armed: None,
                captured: None,
            }),
        }
    }

    /// A simulator whose current and durable images are both `image` (a pool after a restart).
    pub fn from_image(image: &[u8]) -> CrashSim {
        let sim = CrashSim::new(image.len() as u64);
        {
            let mut s = sim.lock();
            s.current[..image.len()].copy_from_slice(image);
            s.durable[..image.len()].copy_from_slice(image);
        }
        sim
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms a crash just before fence number `fence` (1-based) takes effect.
    pub fn arm(&self, fence: u64, mode: CrashMode) {
        let mut s = self.lock();
        s.armed = Some((fence, mode));
        s.captured = None;
    }

    /// The image captured by the armed crash, if its fence was reached.
    pub fn take_crash_image(&self) -> Option<Vec<u8>> {
        self.lock().captured.take()
    }

    /// The image a crash right now would leave.
    pub fn crash_image_now(&self, mode: CrashMode) -> Vec<u8> {
        self.lock().crash_image(mode)
    }

    /// Fences so far.
    pub fn fence_count(&self) -> u64 {
        self.lock().stats.fences
    }

    /// Counters so far.
    pub fn stats(&self) -> CrashSimStats {
        self.lock().stats
    }

    /// The current contents (what a process that did not crash sees).
    pub fn current_image(&self) -> Vec<u8> {
        self.lock().current.clone()
    }
}

impl State {
    fn mark_dirty(&mut self, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        let mut line = off / LINE * LINE;
        while line < off + len {
            self.dirty.insert(line);
            line += LINE;
        }
    }

    fn crash_image(&self, mode: CrashMode) -> Vec<u8> {
        let mut image = self.durable.clone();
        let mut rng = match mode {
            CrashMode::Random { seed } => seed ^ 0x9E37_79B9_7F4A_7C15,
            _ => 0,
        };
        let pending: BTreeSet<u64> = self
            .dirty
            .iter()
            .chain(self.flushed.keys())
            .copied()
            .collect();
        for line in pending {
            let keep = match mode {
                CrashMode::DropUnflushed => false,
                CrashMode::KeepUnflushed => true,
                CrashMode::Random { .. } => splitmix64(&mut rng) & 1 == 1,
            };
            if keep {
                let at = line as usize;
                image[at..at + LINE as usize]
                    .copy_from_slice(&self.current[at..at + LINE as usize]);
            }
        }
        image
    }
}

/// A small, well-mixed generator; reproducibility is all the simulator needs from it.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl fmt::Debug for CrashSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrashSim").field("len", &self.len).finish()
    }
}

impl Backend for CrashSim {
    fn len(&self) -> u64 {
        self.len
    }
    fn read(&self, off: u64, dst: &mut [u8]) {
        check_range(self.len, off, dst.len() as u64);
        let s = self.lock();
        dst.copy_from_slice(&s.current[off as usize..off as usize + dst.len()]);
    }
    fn write(&self, off: u64, src: &[u8]) {
        check_range(self.len, off, src.len() as u64);
        let mut s = self.lock();
        s.current[off as usize..off as usize + src.len()].copy_from_slice(src);
        s.mark_dirty(off, src.len() as u64);
    }
    fn load(&self, off: u64) -> u64 {
        check_word(self.len, off);
        let s = self.lock();
        read_word(&s.current, off)
    }
    fn store(&self, off: u64, value: u64) {
        check_word(self.len, off);
        let mut s = self.lock();
        s.current[off as usize..off as usize + 8].copy_from_slice(&value.to_le_bytes());
        s.mark_dirty(off, 8);
    }
    fn compare_exchange(&self, off: u64, current: u64, new: u64) -> Result<u64, u64> {
        check_word(self.len, off);
        let mut s = self.lock();
        let seen = read_word(&s.current, off);
        if seen != current {
            return Err(seen);
        }
        s.current[off as usize..off as usize + 8].copy_from_slice(&new.to_le_bytes());
        s.mark_dirty(off, 8);
        Ok(seen)
    }
    fn fetch_add(&self, off: u64, add: u64) -> u64 {
        check_word(self.len, off);
        let mut s = self.lock();
        let seen = read_word(&s.current, off);
        s.current[off as usize..off as usize + 8]
            .copy_from_slice(&seen.wrapping_add(add).to_le_bytes());
        s.mark_dirty(off, 8);
        seen
    }
    fn flush(&self, off: u64, len: u64) {
        check_range(self.len, off, len);
        if len == 0 {
            return;
        }
        let mut s = self.lock();
        s.stats.flushes += 1;
        let mut line = off / LINE * LINE;
        while line < off + len {
            if s.dirty.remove(&line) {
                let mut snapshot = [0u8; LINE as usize];
                snapshot.copy_from_slice(&s.current[line as usize..(line + LINE) as usize]);
                s.flushed.insert(line, snapshot);
            }
            line += LINE;
        }
    }
    fn fence(&self) {
        let mut s = self.lock();
        s.stats.fences += 1;
        if let Some((at, mode)) = s.armed
            && at == s.stats.fences
        {
            let image = s.crash_image(mode);
            s.captured = Some(image);
            s.armed = None;
        }
        let flushed = std::mem::take(&mut s.flushed);
        for (line, snapshot) in flushed {
            let at = line as usize;
            s.durable[at..at + LINE as usize].copy_from_slice(&snapshot);
            s.stats.lines_made_durable += 1;
            // A store after the flush left the line dirty again; keep it pending.
            if s.current[at..at + LINE as usize] != snapshot {
                s.dirty.insert(line);
            }
        }
    }
}

fn read_word(image: &[u8], off: u64) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&image[off as usize..off as usize + 8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unflushed_lines_are_dropped_and_fenced_lines_kept() {
        let sim = CrashSim::new(4096);
        sim.write(0, &[1; 64]);
        sim.persist(0, 64);
        sim.write(64, &[2; 64]);
        let image = sim.crash_image_now(CrashMode::DropUnflushed);
        assert_eq!(&image[..64], &[1; 64]);
        assert_eq!(&image[64..128], &[0; 64]);
        let image = sim.crash_image_now(CrashMode::KeepUnflushed);
        assert_eq!(&image[64..128], &[2; 64]);
    }

    #[test]
    fn flushed_but_unfenced_is_not_durable_and_late_store_stays_dirty() {
        let sim = CrashSim::new(4096);
        sim.write(0, &[1; 8]);
        sim.flush(0, 8);
        assert_eq!(&sim.crash_image_now(CrashMode::DropUnflushed)[..8], &[0; 8]);
        sim.write(0, &[2; 8]);
        sim.fence();
        // The fence made the flushed snapshot durable, not the later store.
        let image = sim.crash_image_now(CrashMode::DropUnflushed);
        assert_eq!(&image[..8], &[1; 8]);
        assert_eq!(&sim.crash_image_now(CrashMode::KeepUnflushed)[..8], &[2; 8]);
    }

    #[test]
    fn armed_crash_captures_state_before_the_fence() {
        let sim = CrashSim::new(4096);
        sim.store(0, 7);
        sim.persist(0, 8); // fence 1
        sim.store(8, 9);
        sim.arm(2, CrashMode::DropUnflushed);
        sim.persist(8, 8); // fence 2: captured before it takes effect
        let image = sim.take_crash_image().expect("fence 2 was reached");
        assert_eq!(read_word(&image, 0), 7);
        assert_eq!(read_word(&image, 8), 0);
        assert_eq!(sim.fence_count(), 2);
    }

    #[test]
    fn random_mode_is_reproducible() {
        let sim = CrashSim::new(64 * 64);
        for i in 0..64u64 {
            sim.store(i * 64, i + 1);
        }
        let a = sim.crash_image_now(CrashMode::Random { seed: 5 });
        let b = sim.crash_image_now(CrashMode::Random { seed: 5 });
        let c = sim.crash_image_now(CrashMode::Random { seed: 6 });
        assert_eq!(a, b);
        assert_ne!(a, c);
        let kept = (0..64u64).filter(|i| read_word(&a, i * 64) != 0).count();
        assert!(
            kept > 0 && kept < 64,
            "a random crash keeps some lines and drops others"
        );
    }
}
