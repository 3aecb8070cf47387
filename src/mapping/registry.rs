//! The mapping files in use, one per distinct path, swapped in place on change.
//!
//! A changed file is recompiled off to the side; only a version that compiles replaces the
//! current one, so a broken edit is logged and the previous mapping keeps serving. Requests
//! hold an `Arc` to the version they started with, so a reload never disturbs one in flight.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use super::plan::{LoadError, Mapping};

struct Entry {
    current: RwLock<Arc<Mapping>>,
    modified: Mutex<Option<SystemTime>>,
}

pub struct Mappings {
    entries: HashMap<PathBuf, Entry>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Mappings {
    /// Loads every file; the first that fails stops the start.
    pub fn load<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<Mappings, LoadError> {
        let mut entries = HashMap::new();
        for path in paths {
            if entries.contains_key(path) {
                continue;
            }
            let stamp = modified(path);
            let mapping = Mapping::load(path)?;
            entries.insert(
                path.to_path_buf(),
                Entry {
                    current: RwLock::new(Arc::new(mapping)),
                    modified: Mutex::new(stamp),
                },
            );
        }
        Ok(Mappings { entries })
    }

    pub fn get(&self, path: &Path) -> Option<Arc<Mapping>> {
        let entry = self.entries.get(path)?;
        let guard = entry
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(Arc::clone(&guard))
    }

    /// Reloads the files whose modification time changed (or all, with `force`). Returns how
    /// many were replaced; failures are logged and leave the previous version in place.
    pub fn reload(&self, force: bool) -> usize {
        let mut replaced = 0;
        for (path, entry) in &self.entries {
            let stamp = modified(path);
            {
                let mut last = entry.modified.lock().unwrap_or_else(|p| p.into_inner());
                if !force && *last == stamp {
                    continue;
                }
                *last = stamp;
            }
            match Mapping::load(path) {
                Ok(mapping) => {
                    *entry.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(mapping);
                    replaced += 1;
                    tracing::info!(mapping = %path.display(), "mapping reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "mapping change refused; the previous version keeps serving")
                }
            }
        }
        replaced
    }
}
