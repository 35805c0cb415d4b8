//! `vfpgad --print-libvirt-xml`: what a libvirt domain needs to attach a guest to its
//! vhost-user socket, as a `<domain>` fragment to merge into the guest's XML.
//!
//! libvirt (9.0 and later, up to at least 11) has no element for QEMU's generic
//! vhost-user device, so the chardev and the device are passed through with
//! `<qemu:commandline>`; the guest memory is shared with `<memoryBacking>` (memfd,
//! shared access), which libvirt turns into `-machine memory-backend=` for a guest
//! without NUMA cells, or `memAccess` for each cell of one with them.
//!
//! The device is given in QEMU's JSON form, like the devices libvirt itself adds: QEMU
//! 11 creates devices given as `key=value` before those given as JSON, so a `key=value`
//! device would take a PCI slot that libvirt has assigned to one of its own devices
//! ("PCI: slot 2 function 0 not available"). In JSON form it comes last and QEMU gives
//! it the first free slot.

use std::io::Write;
use std::path::Path;

use vfpga_proto::DEFAULT_VIRTIO_ID;

use crate::config::{Config, GuestConfig};

/// The largest ring QEMU accepts (`VIRTQUEUE_MAX_SIZE`): it aborts above.
const QEMU_MAX_RING: u16 = 1024;

/// Why no fragment can be printed.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    /// `--print-libvirt-xml NAME` names no configured guest.
    #[error("--print-libvirt-xml {name}: no guest {name} in the configuration (guests: {known})")]
    UnknownGuest {
        /// The name asked for.
        name: String,
        /// The configured guests.
        known: String,
    },
    /// The guest is served on streams only.
    #[error(
        "guest {0} has no vhost-user socket (it is served on stream listeners only): a \
         libvirt domain attaches to a socket; give the guest `socket = ...`"
    )]
    NoSocket(String),
    /// No guest at all has a socket.
    #[error("no guest has a vhost-user socket: give --socket NAME=PATH or [[guest]] socket")]
    NoGuests,
    /// A socket path that cannot go into the XML and QEMU's option.
    #[error("guest {guest}: socket path {path:?} {why}")]
    BadPath {
        /// The guest.
        guest: String,
        /// The path, as given.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Writing the output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Prints the fragment of `only` (a guest's name), or of every guest with a socket.
pub fn print(out: &mut impl Write, c: &Config, only: Option<&str>) -> Result<(), LibvirtError> {
    let guests: Vec<&GuestConfig> = match only {
        Some(name) => {
            let g = c.guests.iter().find(|g| g.name == name).ok_or_else(|| {
                LibvirtError::UnknownGuest {
                    name: name.to_owned(),
                    known: known(c),
                }
            })?;
            if g.socket.is_none() {
                return Err(LibvirtError::NoSocket(g.name.clone()));
            }
            vec![g]
        }
        None => c.guests.iter().filter(|g| g.socket.is_some()).collect(),
    };
    if guests.is_empty() {
        return Err(LibvirtError::NoGuests);
    }
    // Every path is checked before anything is written: no half output.
    let mut fragments = Vec::with_capacity(guests.len());
    for g in guests {
        fragments.push(fragment(c, g)?);
    }
    out.write_all(fragments.join("\n").as_bytes())?;
    Ok(())
}

fn known(c: &Config) -> String {
    if c.guests.is_empty() {
        return "none".to_owned();
    }
    c.guests
        .iter()
        .map(|g| g.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One guest's `<domain>` fragment.
fn fragment(c: &Config, g: &GuestConfig) -> Result<String, LibvirtError> {
    let Some(socket) = g.socket.as_deref() else {
        return Err(LibvirtError::NoSocket(g.name.clone()));
    };
    let path = socket_arg(&g.name, socket)?;
    let num_vqs = 1 + u32::from(c.device.request_queues);
    let vq_size = c.device.queue_size.min(QEMU_MAX_RING);
    let config_size = vfpga_proto::DeviceConfig::SIZE;
    // `--` may not appear in an XML comment: a name with it is shown as `- -`.
    let mut name = String::with_capacity(g.name.len() + 4);
    for ch in g.name.chars() {
        if ch == '-' && name.ends_with('-') {
            name.push(' ');
        }
        name.push(ch);
    }
    Ok(format!(
        "<!-- vfpgad guest {name}: merge into its libvirt domain (virsh edit; docs/qemu.md).
     Guest memory shared with vfpgad, and the device on the guest's socket: start
     vfpgad before the domain. -->
<domain xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>
  <qemu:commandline>
    <qemu:arg value='-chardev'/>
    <qemu:arg value='socket,id=vfpga0,path={path}'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='{{\"driver\":\"vhost-user-test-device-pci\",\"chardev\":\"vfpga0\",\"virtio-id\":{DEFAULT_VIRTIO_ID},\"num_vqs\":{num_vqs},\"vq_size\":{vq_size},\"config_size\":{config_size}}}'/>
  </qemu:commandline>
</domain>
"
    ))
}

/// The socket path as it must appear in the `value` attribute of the `-chardev`
/// argument: QEMU's option syntax doubles commas, then XML escapes what a quoted
/// attribute cannot hold.
fn socket_arg(guest: &str, socket: &Path) -> Result<String, LibvirtError> {
    let bad = |why| LibvirtError::BadPath {
        guest: guest.to_owned(),
        path: socket.display().to_string(),
        why,
    };
    let s = socket
        .to_str()
        .ok_or_else(|| bad("is not UTF-8, which a libvirt domain's XML cannot carry"))?;
    if !socket.is_absolute() {
        return Err(bad(
            "is relative: QEMU runs in another folder, give an absolute path",
        ));
    }
    let mut out = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        match ch {
            ',' => out.push_str(",,"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            // An attribute's newlines and tabs become spaces unless written as
            // references; other control characters are not XML 1.0 at all.
            '\t' | '\n' | '\r' => out.push_str(&format!("&#{};", u32::from(ch))),
            c if c.is_control() => {
                return Err(bad("holds a control character, which XML 1.0 cannot carry"))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    use super::*;

    fn config(guests: Vec<GuestConfig>) -> Config {
        Config {
            guests,
            ..Config::default()
        }
    }

    fn printed(c: &Config, only: Option<&str>) -> Result<String, LibvirtError> {
        let mut out = Vec::new();
        print(&mut out, c, only)?;
        Ok(String::from_utf8(out).unwrap())
    }

    /// The fragment docs/qemu.md shows is what the printer prints for the command the
    /// doc gives.
    #[test]
    fn the_doc_shows_what_is_printed() {
        let doc = include_str!("../../../docs/qemu.md");
        let section = doc
            .split("\n## libvirt\n")
            .nth(1)
            .expect("docs/qemu.md has a `## libvirt` section");
        let block = section
            .split("```xml\n")
            .nth(1)
            .and_then(|b| b.split("```\n").next())
            .expect("the libvirt section has an ```xml block");
        assert!(
            section.contains("vfpgad --socket vm0=/run/vfpga/vm0.sock --print-libvirt-xml"),
            "the section gives the command whose output it shows"
        );
        let c = config(vec![GuestConfig::new("vm0", "/run/vfpga/vm0.sock")]);
        assert_eq!(block, printed(&c, None).unwrap());
    }

    #[test]
    fn the_device_follows_the_configuration() {
        let mut c = config(vec![GuestConfig::new("vm0", "/run/vfpga/vm0.sock")]);
        c.device.request_queues = 5;
        c.device.queue_size = 256;
        let out = printed(&c, Some("vm0")).unwrap();
        assert!(
            out.contains(r#""virtio-id":21,"num_vqs":6,"vq_size":256,"config_size":40}"#),
            "{out}"
        );
        c.device.queue_size = 32768;
        let out = printed(&c, None).unwrap();
        assert!(out.contains(r#""vq_size":1024,"#), "QEMU's limit: {out}");
    }

    #[test]
    fn one_fragment_per_guest_with_a_socket_or_the_named_one() {
        let mut stream_only = GuestConfig::named("vm2");
        stream_only
            .listen
            .push("unix:/run/vfpga/vm2.vsock_7000".into());
        let c = config(vec![
            GuestConfig::new("vm0", "/run/vfpga/vm0.sock"),
            GuestConfig::new("vm1", "/run/vfpga/vm1.sock"),
            stream_only,
        ]);
        let all = printed(&c, None).unwrap();
        assert_eq!(all.matches("<domain ").count(), 2, "{all}");
        assert!(
            all.contains("path=/run/vfpga/vm0.sock'") && all.contains("path=/run/vfpga/vm1.sock'")
        );
        let one = printed(&c, Some("vm1")).unwrap();
        assert_eq!(one.matches("<domain ").count(), 1);
        assert!(one.contains("guest vm1:") && one.contains("path=/run/vfpga/vm1.sock'"));
        assert!(!one.contains("vm0"));

        let e = printed(&c, Some("vm2")).unwrap_err().to_string();
        assert!(e.contains("guest vm2 has no vhost-user socket"), "{e}");
        let e = printed(&c, Some("vm9")).unwrap_err().to_string();
        assert_eq!(
            e,
            "--print-libvirt-xml vm9: no guest vm9 in the configuration (guests: vm0, vm1, vm2)"
        );
        let e = printed(&config(Vec::new()), None).unwrap_err().to_string();
        assert!(e.contains("no guest has a vhost-user socket"), "{e}");
        let e = printed(&config(Vec::new()), Some("vm0"))
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("(guests: none)"), "{e}");
    }

    #[test]
    fn hostile_paths_are_escaped_or_refused() {
        let c = config(vec![GuestConfig::new(
            "a---b",
            "/run/it's <a>,\"b\"&\n/x.sock",
        )]);
        let out = printed(&c, None).unwrap();
        assert!(
            out.contains("path=/run/it&apos;s &lt;a&gt;,,&quot;b&quot;&amp;&#10;/x.sock'/>"),
            "{out}"
        );
        let comment = &out[4..out.find("-->").unwrap()];
        assert!(comment.contains("guest a- - -b:"), "{comment}");
        assert!(!comment.contains("--"), "{comment}");

        for (path, why) in [
            (PathBuf::from("/run/a\u{1}b"), "control character"),
            (PathBuf::from("run/vm0.sock"), "is relative"),
            (
                PathBuf::from(std::ffi::OsStr::from_bytes(b"/run/\xff.sock")),
                "not UTF-8",
            ),
        ] {
            let c = config(vec![
                GuestConfig::new("ok", "/run/ok.sock"),
                GuestConfig::new("vm0", path),
            ]);
            let mut out = Vec::new();
            let e = print(&mut out, &c, None).unwrap_err().to_string();
            assert!(
                e.starts_with("guest vm0: socket path") && e.contains(why),
                "{e}"
            );
            assert!(out.is_empty(), "nothing printed before the error");
        }
    }
}
