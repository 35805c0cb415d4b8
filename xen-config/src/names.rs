//! The names vfpga gives things, one rule each, checked the same way by `vfpgad` and
//! `vfpga-xen` with the same message.
//!
//! - A **guest name** names a guest of vfpgad in logs, statistics, socket names, its
//!   xenstore record (`.../guests/NAME`, a path component) and its default TLS name:
//!   1 to 31 letters, digits, `_` or `-` — what all of those accept.
//! - A **domain name** is a Xen domain's `name` (xl.cfg, `xl list`): 1 to 64 letters,
//!   digits, `_`, `.` or `-`, which `vfpga-xen` can write into an xl.cfg and a file name.

/// Checks a guest name.
pub fn guest_name(name: &str) -> Result<(), String> {
    let ok = (1..=31).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "guest name {name:?}: use 1 to 31 letters, digits, '_' or '-' (it names the guest in logs, sockets, xenstore and certificates; a Xen domain of another name is set with domain = \"...\")"
        ))
    }
}

/// Checks a Xen domain name.
pub fn domain_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "domain name {name:?}: use 1 to 64 letters, digits, '_', '.' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_each() {
        for good in ["vm0", "web-1", "a_b", &"x".repeat(31)] {
            assert!(guest_name(good).is_ok(), "{good}");
        }
        for bad in ["", "dom.u1", "a@b", "a b", "a/b", &"x".repeat(32)] {
            let e = guest_name(bad).unwrap_err();
            assert!(e.contains("letters, digits, '_' or '-'"), "{e}");
        }
        for good in ["web.lab", "vm-1", "d_2", &"x".repeat(64)] {
            assert!(domain_name(good).is_ok(), "{good}");
        }
        for bad in ["", "vm 1", "bad domain!", "a/b", &"x".repeat(65)] {
            assert!(domain_name(bad).is_err(), "{bad}");
        }
    }
}
