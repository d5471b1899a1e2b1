//! The one way netc writes an output file: whole or not at all.
//!
//! A temporary file in the target's directory is written, flushed to disk, given the usual
//! permissions of a created file (`0o666` less the process umask, as `File::create` would; the
//! temporary file itself is private, `0o600`), then renamed over the target — atomic on POSIX
//! filesystems, including NFS for readers that open after the rename. A reader never sees a
//! half-written file, and an interrupted write leaves the old file (if any) in place.

use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` atomically, creating its directory if needed.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            tmp.path(),
            std::fs::Permissions::from_mode(0o666 & !umask()),
        )?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The process umask, read from `/proc/self/status` (Linux ≥ 4.7); `0o022`, the usual default,
/// where that line is missing. Reading it there avoids `umask(2)`, which can only be read by
/// setting it — a race with other threads creating files.
#[cfg(unix)]
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_with_the_permissions_of_a_created_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/out.txt");
        write(&p, b"first").unwrap();
        write(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        // nothing but the target is left in the directory
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.txt")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // the same mode `File::create` gives a new file under this process's umask
            let created = dir.path().join("created.txt");
            std::fs::File::create(&created).unwrap();
            let want = std::fs::metadata(&created).unwrap().permissions().mode() & 0o777;
            let got = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(got, want, "{got:o} vs {want:o}");
        }
    }
}
