//! [`TempDir`]: a directory under the system's temporary directory, unique to the process and
//! the call, removed with everything in it when the handle drops.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::TOKEN;

/// A scratch directory, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    root: PathBuf,
}

impl TempDir {
    /// Creates `dinomo-<tag>-<pid>-<n>` in the temporary directory.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("dinomo-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&root)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
        TempDir { root }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `file` in the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }

    /// A file `token` holding [`TOKEN`], readable by its owner only.
    pub fn token_file(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path("token");
        std::fs::write(&path, format!("{TOKEN}\n")).expect("write the token file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("restrict the token file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
