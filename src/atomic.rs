//! The one way netc writes an output file: whole or not at all.
//!
//! A temporary file in the target's directory is written, flushed to disk, given the usual
//! permissions of a created file (`0o666` less the process umask, as `File::create` would; the
//! temporary file itself is private, `0o600`), then renamed over the target — atomic on POSIX
//! filesystems, including NFS for readers that open after the rename. A reader never sees a
//! half-written file, and an interrupted write leaves the old file (if any) in place.
//!
//! [`write`] takes the bytes; [`write_via`] is for writers that need a path to write to (the
//! plotters backends). A directory built whole in a temporary directory and renamed into place
//! gets a created directory's permissions from [`publish_dir_permissions`].

use std::io::Write;
use std::path::Path;

use tempfile::TempPath;

/// Write `bytes` to `path` atomically, creating its directory if needed.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    publish(tmp.into_temp_path(), path)
}

/// Why [`write_via`] failed: the caller's `fill`, or the file system around it.
#[derive(Debug)]
pub enum ViaError<E> {
    /// `fill` returned this error (the temporary file has been removed).
    Fill(E),
    /// Creating the directory or temporary file, syncing, or renaming failed.
    Io(std::io::Error),
}

impl<E: std::fmt::Display> std::fmt::Display for ViaError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ViaError::Fill(e) => e.fmt(f),
            ViaError::Io(e) => e.fmt(f),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for ViaError<E> {}

/// Write `path` atomically through `fill`, which is given a temporary path to write the whole
/// file to (in `path`'s directory, created if needed, and with `path`'s extension: plotters'
/// `BitMapBackend` picks the image format from it). When `fill` fails the temporary file is
/// removed and `path` is left as it was; when it succeeds the file is synced, given a created
/// file's permissions and renamed onto `path`.
pub fn write_via<E>(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), ViaError<E>> {
    let tmp = temp_beside(path).map_err(ViaError::Io)?.into_temp_path();
    // `tmp` removes the file when dropped: on `fill`'s error and on a panic in it
    fill(&tmp).map_err(ViaError::Fill)?;
    // `fill` wrote through its own handle (maybe a new file at the path): sync what is there now
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(ViaError::Io)?;
    publish(tmp, path).map_err(ViaError::Io)
}

/// Give `dir`, a directory built whole in a temporary directory (`tempfile` makes those `0o700`)
/// before it is renamed into place, the permissions of a created directory: `0o777` less the
/// process umask, as `std::fs::create_dir` would.
pub fn publish_dir_permissions(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777 & !umask()))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A new, empty, uniquely named hidden file in `path`'s directory (created if needed), with
/// `path`'s extension.
fn temp_beside(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let suffix = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(".tmp-")
        .suffix(&suffix)
        .tempfile_in(dir)
}

/// The last steps of every write: give the finished temporary file a created file's permissions
/// and rename it onto `path`.
fn publish(tmp: TempPath, path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666 & !umask()))?;
    }
    tmp.persist(path).map_err(|e| e.error)
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
        assert_eq!(names(p.parent().unwrap()), vec!["out.txt"]);
        #[cfg(unix)]
        assert_eq!(mode(&p), created_file_mode(dir.path()));
    }

    /// The permission bits of `p`.
    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// The mode `File::create` gives a new file in `dir` under this process's umask.
    #[cfg(unix)]
    fn created_file_mode(dir: &Path) -> u32 {
        let created = dir.join("created");
        std::fs::File::create(&created).unwrap();
        let m = mode(&created);
        std::fs::remove_file(&created).unwrap();
        m
    }

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_failed_fill_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pic.png");
        let mut seen = None;
        let r = write_via(&p, |t| {
            // a half-written file at the temporary path, then a failure
            std::fs::write(t, b"half").unwrap();
            seen = Some(t.to_path_buf());
            Err("drawing failed")
        });
        assert!(matches!(r, Err(ViaError::Fill("drawing failed"))), "{r:?}");
        let t = seen.unwrap();
        // the temporary path was beside the target, hidden, and kept its extension
        assert_eq!(t.parent(), Some(dir.path()));
        assert!(t.file_name().unwrap().to_string_lossy().starts_with('.'));
        assert_eq!(t.extension().unwrap(), "png");
        assert_eq!(names(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn a_filled_file_is_published_with_the_permissions_of_a_created_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/out.svg");
        write_via(&p, |t| std::fs::write(t, b"<svg/>")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"<svg/>");
        assert_eq!(names(&dir.path().join("sub")), vec!["out.svg"]);
        #[cfg(unix)]
        assert_eq!(mode(&p), created_file_mode(dir.path()));
    }

    #[test]
    fn a_picture_drawn_by_plotters_through_write_via_is_a_png() {
        use plotters::prelude::*;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pic.png");
        write_via(&p, |t| -> Result<(), Box<dyn std::error::Error>> {
            let area = BitMapBackend::new(t, (32, 24)).into_drawing_area();
            area.fill(&WHITE)?;
            area.draw(&Rectangle::new([(4, 4), (20, 16)], BLUE.filled()))?;
            area.present()?;
            Ok(())
        })
        .unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{:?}",
            &bytes[..bytes.len().min(8)]
        );
        assert_eq!(names(dir.path()), vec!["pic.png"]);
    }

    #[test]
    fn a_published_directory_has_the_permissions_of_a_created_directory() {
        let dir = tempfile::tempdir().unwrap();
        let built = tempfile::tempdir_in(dir.path()).unwrap().keep();
        publish_dir_permissions(&built).unwrap();
        #[cfg(unix)]
        {
            let created = dir.path().join("created");
            std::fs::create_dir(&created).unwrap();
            assert_eq!(mode(&built), mode(&created), "{:o}", mode(&built));
        }
    }
}
