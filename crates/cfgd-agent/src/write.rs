//! Writing a rendered file so that no reader ever sees half of it or a
//! wrong mode: staged beside the destination, its mode and owner set and
//! synced, then renamed over it. `in_place` writes through the existing
//! inode instead, for a bind-mounted file that a rename would detach.

use std::ffi::CString;
use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// Where and how a file is written.
#[derive(Debug, Clone)]
pub struct Target {
    pub path: PathBuf,
    pub mode: u32,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub in_place: bool,
}

/// The rendered bytes, staged beside the destination and not yet in its
/// place. Dropping it removes it.
pub struct Staged {
    file: tempfile::NamedTempFile,
    target: Target,
}

impl Staged {
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Puts the staged file in the destination's place.
    pub fn commit(self) -> Result<()> {
        let target = self.target;
        if target.in_place && target.path.exists() {
            // Through the existing inode: the bytes are copied over it.
            let bytes = std::fs::read(self.file.path())?;
            let mut file = OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&target.path)
                .with_context(|| {
                    format!("cannot open {} to write in place", target.path.display())
                })?;
            set_owner_mode(&file, &target)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            return Ok(());
        }
        let path = target.path.clone();
        self.file
            .persist(&path)
            .map_err(|e| anyhow!("cannot rename into {}: {}", path.display(), e.error))?;
        // The rename itself is durable only once the directory is synced.
        if let Some(dir) = path.parent() {
            if let Ok(dir) = File::open(dir_or_here(dir)) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

fn dir_or_here(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

/// Whether `target` already holds exactly `bytes` with its mode: then
/// nothing is written.
pub fn unchanged(target: &Target, bytes: &[u8]) -> bool {
    let Ok(meta) = std::fs::metadata(&target.path) else {
        return false;
    };
    meta.mode() & 0o7777 == target.mode
        && meta.len() == bytes.len() as u64
        && target.owner.is_none_or(|uid| meta.uid() == uid)
        && target.group.is_none_or(|gid| meta.gid() == gid)
        && std::fs::read(&target.path).is_ok_and(|now| now == bytes)
}

/// `bytes` staged for `target`: written, mode and owner set, synced.
/// Beside the destination, so that the rename stays on one filesystem;
/// for `in_place` over an existing file, in the temporary directory
/// instead (a bind-mounted file's directory is often read-only).
pub fn stage(target: &Target, bytes: &[u8]) -> Result<Staged> {
    let temp = std::env::temp_dir();
    let dir = match target.in_place && target.path.exists() {
        true => temp.as_path(),
        false => dir_or_here(target.path.parent().unwrap_or(Path::new("."))),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    let name = target
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Created 0600 by tempfile; set to the wanted mode before any rename,
    // so the file never shows in its place with another.
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".cfgd-agent")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a staging file in {}", dir.display()))?;
    file.write_all(bytes)?;
    set_owner_mode(file.as_file(), target)?;
    file.as_file().sync_all()?;
    Ok(Staged {
        file,
        target: target.clone(),
    })
}

/// Stages and commits at once (the snapshot; a file without `check`).
pub fn replace(target: &Target, bytes: &[u8]) -> Result<()> {
    stage(target, bytes)?.commit()
}

fn set_owner_mode(file: &File, target: &Target) -> Result<()> {
    if target.owner.is_some() || target.group.is_some() {
        std::os::unix::fs::fchown(file, target.owner, target.group).with_context(|| {
            format!(
                "cannot set the owner of {} (the agent must run as root or own the file)",
                target.path.display()
            )
        })?;
    }
    file.set_permissions(Permissions::from_mode(target.mode))
        .with_context(|| format!("cannot set the mode of {}", target.path.display()))?;
    Ok(())
}

/// A user by name or number.
pub fn uid(owner: &str) -> Result<u32> {
    if let Ok(n) = owner.parse() {
        return Ok(n);
    }
    let name = CString::new(owner)?;
    // SAFETY: getpwnam returns a pointer into static storage or null; read
    // at once, at start, before any thread calls it again.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        bail!("owner {owner:?}: no such user");
    }
    // SAFETY: non-null, as checked.
    Ok(unsafe { (*entry).pw_uid })
}

/// A group by name or number.
pub fn gid(group: &str) -> Result<u32> {
    if let Ok(n) = group.parse() {
        return Ok(n);
    }
    let name = CString::new(group)?;
    // SAFETY: as in `uid`.
    let entry = unsafe { libc::getgrnam(name.as_ptr()) };
    if entry.is_null() {
        bail!("group {group:?}: no such group");
    }
    // SAFETY: non-null, as checked.
    Ok(unsafe { (*entry).gr_gid })
}
