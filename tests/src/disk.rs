//! A small file system for a disk-full experiment: a tmpfs of a given size, mounted on
//! creation, resized on demand, unmounted on drop (also when the test fails). Mounting needs
//! root, which CI has.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

pub struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`256k`, `64m`) on a new directory; None when that is not
    /// possible here (not root).
    pub fn mount(size: &str) -> Option<SmallDisk> {
        let path = std::env::temp_dir().join(format!("e2e-disk-{}", crate::rand_suffix()));
        std::fs::create_dir_all(&path).ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .ok()?
            .success();
        if !mounted {
            let _ = std::fs::remove_dir(&path);
        }
        mounted.then_some(SmallDisk { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Changes the size (shrinking fails while the files need more).
    pub fn resize(&self, size: &str) -> Result<()> {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()?;
        if !status.success() {
            bail!("remount {} with size {size}: {status}", self.path.display());
        }
        Ok(())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
        let _ = std::fs::remove_dir(&self.path);
    }
}
