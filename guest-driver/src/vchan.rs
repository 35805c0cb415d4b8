//! Xen vchan endpoints: vfpgad in dom0 offers a few channels to each domU it serves,
//! under `<the domU's xenstore path>/vfpga/<N>`; a client takes the first free one.

use std::io;

use vfpga_transport::vchan::Vchan;

use crate::link::Link;

/// Most channels looked at.
const MAX_SLOTS: u32 = 64;

/// Connects to vfpgad in domain `domid` through a free channel under `path`.
pub(crate) fn open(domid: u16, path: &str) -> io::Result<Link> {
    let mut taken = 0;
    for n in 0..MAX_SLOTS {
        match Vchan::connect(domid, &format!("{path}/{n}")) {
            Ok(v) => return Ok(Link::stream(Box::new(v))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => taken += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound && n > 0 => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "no vchan offered at {path}/0 (is vfpgad running in domain {domid} with `listen = [\"vchan\"]` for this guest?)"
                    ),
                ))
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::WouldBlock,
        format!(
            "all {taken} vchan channels at {path} are in use (vfpgad's [stream] max_connections)"
        ),
    ))
}
