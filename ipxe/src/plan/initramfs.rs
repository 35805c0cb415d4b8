//! The netboot initramfs: busybox, the kernel's modules and their load order.

use std::path::PathBuf;

use crate::error::Error;
use crate::initramfs::{self, Module};
use crate::probe;

use super::checks::{check_dir, check_file};

/// The checked netboot initramfs.
#[derive(Debug)]
pub struct InitramfsPlan {
    /// Kernel release (the modules folder's name).
    pub kver: String,
    /// `/lib/modules/VERSION`.
    pub modules_dir: PathBuf,
    /// The busybox file.
    pub busybox: PathBuf,
    /// Modules in load order.
    pub modules: Vec<Module>,
    /// gzip the image.
    pub compress: bool,
}

pub(super) fn check(
    i: &crate::description::Initramfs,
    p: &mut Vec<String>,
) -> Result<Option<InitramfsPlan>, Error> {
    let busybox = i
        .busybox
        .clone()
        .unwrap_or_else(|| PathBuf::from("/bin/busybox"));
    if i.busybox.is_none() && !busybox.exists() {
        p.push(format!(
            "initramfs.busybox: this host has no {}: apt-get install busybox-static (a statically linked busybox), or give --busybox PATH (initramfs.busybox)",
            busybox.display()
        ));
    } else if let Some(data) = check_file("initramfs.busybox", &busybox, p) {
        match probe::elf_has_interpreter(&data) {
            Some(false) => {}
            Some(true) => p.push(format!(
                "initramfs.busybox {}: dynamically linked; the initramfs has no libraries (install busybox-static, whose /bin/busybox is static)",
                busybox.display()
            )),
            None => p.push(format!(
                "initramfs.busybox {}: not an ELF program",
                busybox.display()
            )),
        }
    }
    let Some(md) = &i.modules_dir else {
        p.push(
            "initramfs.modules_dir is missing: /lib/modules/VERSION of the guest kernel".to_owned(),
        );
        return Ok(None);
    };
    let Some(modules_dir) = check_dir("initramfs.modules_dir", md, p) else {
        return Ok(None);
    };
    let kver = modules_dir
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut wanted: Vec<String> = i.modules.clone().unwrap_or_else(|| {
        initramfs::DEFAULT_MODULES
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    });
    wanted.extend(i.extra_modules.clone().unwrap_or_default());
    let modules = match initramfs::resolve(&modules_dir, &wanted) {
        Ok(m) => m,
        Err(Error::Invalid(v)) => {
            p.extend(v);
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    Ok(Some(InitramfsPlan {
        kver,
        modules_dir,
        busybox,
        modules,
        compress: i.compress.unwrap_or(true),
    }))
}
