//! Xen vchan endpoints: vfpgad in dom0 offers a few channels to each domU it serves,
//! under `<the domU's xenstore path>/vfpga/<N>`; a client takes the first free one.

use std::io;
use std::time::Duration;

use vfpga_transport::vchan::Vchan;

use crate::link::Stream;

/// Most channels looked at.
const MAX_SLOTS: u32 = 16;

/// Connects to vfpgad in domain `domid` through a free channel under `path`.
pub(crate) fn open(domid: u16, path: &str) -> io::Result<Box<dyn Stream>> {
    let (mut offered, mut taken) = (0, 0);
    // A channel readied for its next client may be missing for a moment: look twice
    // more before giving up.
    for attempt in 0..3 {
        for n in 0..MAX_SLOTS {
            match Vchan::connect(domid, &format!("{path}/{n}")) {
                Ok(v) => return Ok(Box::new(v)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    offered += 1;
                    taken += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // No event-channel or grant device in this domain: no slot will do.
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{e} (a domU needs the xen-evtchn and xen-gntdev modules)"),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
        if offered > 0 {
            break;
        }
        if attempt < 2 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if offered == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no vchan offered under {path} (is vfpgad running in domain {domid} with `listen = [\"vchan\"]` for this guest's domain?)"
            ),
        ));
    }
    Err(io::Error::new(
        io::ErrorKind::WouldBlock,
        format!("all {taken} vchan channels under {path} are in use (vfpgad's [stream] max_connections)"),
    ))
}
