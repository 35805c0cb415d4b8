//! The Vitis HLS AXI-lite control protocol: `ap_ctrl` at 0x00 (start, done, idle,
//! ready), global and per-source interrupt enables at 0x04 and 0x08, the interrupt
//! status at 0x0C (toggle-on-write), arguments from 0x10.

use std::time::{Duration, Instant};

use super::uio::Uio;
use crate::EngineError;

/// `ap_ctrl` register.
pub const AP_CTRL: usize = 0x00;
/// Global interrupt enable.
pub const GIE: usize = 0x04;
/// Interrupt enable (bit 0: ap_done).
pub const IER: usize = 0x08;
/// Interrupt status (bit 0: ap_done; write 1 to clear).
pub const ISR: usize = 0x0c;
/// `ap_ctrl` bits.
pub const AP_START: u32 = 1 << 0;
/// Done (clear on read in hardware).
pub const AP_DONE: u32 = 1 << 1;
/// Idle.
pub const AP_IDLE: u32 = 1 << 2;
/// Ready for new inputs.
pub const AP_READY: u32 = 1 << 3;

fn reg(uio: &Uio, off: usize) -> Result<u32, EngineError> {
    uio.regs.read32(off).ok_or_else(|| {
        EngineError::Failed(format!(
            "uio{}: register {off:#x} outside the window",
            uio.index
        ))
    })
}

fn set(uio: &Uio, off: usize, v: u32) -> Result<(), EngineError> {
    if uio.regs.write32(off, v) {
        Ok(())
    } else {
        Err(EngineError::Failed(format!(
            "uio{}: register {off:#x} outside the window",
            uio.index
        )))
    }
}

/// Writes the argument registers, starts the core and waits until it is done (by
/// interrupt or by polling `ap_done`), at most `timeout`.
pub fn run(
    uio: &mut Uio,
    writes: &[(u32, u32)],
    irq: bool,
    timeout: Duration,
) -> Result<(), EngineError> {
    let ctrl = reg(uio, AP_CTRL)?;
    if ctrl & AP_START != 0 || ctrl & AP_IDLE == 0 {
        return Err(EngineError::Failed(format!(
            "uio{}: core is not idle (ap_ctrl = {ctrl:#x}); a previous run may have hung",
            uio.index
        )));
    }
    for &(off, v) in writes {
        set(uio, off as usize, v)?;
    }
    if irq {
        set(uio, ISR, 1)?;
        set(uio, IER, 1)?;
        set(uio, GIE, 1)?;
        uio.enable_irq()?;
    } else {
        set(uio, GIE, 0)?;
    }
    set(uio, AP_CTRL, AP_START)?;
    let deadline = Instant::now() + timeout;
    if irq {
        let left = deadline.saturating_duration_since(Instant::now());
        if !uio.wait_irq(left)? {
            return Err(EngineError::Timeout(timeout));
        }
        // Acknowledge: toggle-on-write clears ap_done's status bit.
        set(uio, ISR, 1)?;
        if reg(uio, AP_CTRL)? & (AP_DONE | AP_IDLE) == 0 {
            return Err(EngineError::Failed(format!(
                "uio{}: interrupt without ap_done/ap_idle (ap_ctrl = {:#x})",
                uio.index,
                reg(uio, AP_CTRL)?
            )));
        }
        return Ok(());
    }
    let mut pause = Duration::from_micros(20);
    loop {
        if reg(uio, AP_CTRL)? & AP_DONE != 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(EngineError::Timeout(timeout));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}
