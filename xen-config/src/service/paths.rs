//! The paths a service may register under and the names under it: xenstore's
//! characters, and the parts of the tree that belong to Xen.

use super::{ServiceError, DEFAULT_PATH};

/// Top-level parts of xenstore that belong to Xen and the toolstack: a service path
/// must not be one of them (or a domain's home), as the service writes below it.
const RESERVED_PATHS: [&str; 6] = ["/local", "/local/domain", "/vm", "/libxl", "/tool", "/vss"];

/// The characters xenstored accepts in a node name besides letters and digits.
fn xs_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_-@".contains(&b)
}

/// Checks that `path` is an absolute xenstore path (letters, digits and `_-@/`, as
/// xenstored allows, no empty component, no trailing slash) that is not one of Xen's
/// own trees or a domain's home.
pub fn check_path(path: &str) -> Result<(), ServiceError> {
    let ok = path.len() > 1
        && path.len() <= 1024
        && path.starts_with('/')
        && !path.ends_with('/')
        && !path.contains("//")
        && path.bytes().all(|b| b == b'/' || xs_char(b));
    if !ok {
        return Err(ServiceError::Invalid(format!(
            "xenstore path {path:?}: give an absolute path of letters, digits and _-@/ \
             without a trailing slash, e.g. {DEFAULT_PATH}"
        )));
    }
    let domain_home = path
        .strip_prefix("/local/domain/")
        .is_some_and(|id| id.bytes().all(|b| b.is_ascii_digit()));
    if RESERVED_PATHS.contains(&path) || domain_home {
        return Err(ServiceError::Invalid(format!(
            "xenstore path {path:?} belongs to Xen and its toolstack: give a path of the \
             service's own below it, e.g. {DEFAULT_PATH}"
        )));
    }
    Ok(())
}

/// Checks a guest name (one rule everywhere: [`crate::names::guest_name`]), which is a
/// path component of the record.
pub fn check_component(name: &str) -> Result<(), ServiceError> {
    crate::names::guest_name(name).map_err(ServiceError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::DEFAULT_PATH;

    #[test]
    fn paths_are_checked() {
        assert!(check_path(DEFAULT_PATH).is_ok());
        assert!(check_path("/vfpga").is_ok());
        assert!(check_path("/local/domain/0/vfpga-2").is_ok());
        for bad in ["", "/", "vfpga", "/a/", "/a//b", "/a b", "/a\u{e9}", "/a.b"] {
            let e = check_path(bad).expect_err(bad).to_string();
            assert!(e.contains("absolute path"), "{bad}: {e}");
        }
        for reserved in [
            "/local",
            "/local/domain",
            "/local/domain/0",
            "/local/domain/17",
            "/vm",
            "/libxl",
            "/tool",
        ] {
            let e = check_path(reserved).expect_err(reserved).to_string();
            assert!(e.contains("belongs to Xen"), "{reserved}: {e}");
        }
        assert!(check_component("vm-1_a").is_ok());
        for bad in ["", "a/b", "a b", "web.lab", "a@b"] {
            assert!(check_component(bad).is_err(), "{bad}");
        }
    }
}
