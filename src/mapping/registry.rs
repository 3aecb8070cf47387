//! The mapping files in use, one per distinct path, swapped in place on change.
//!
//! A changed file is recompiled off to the side; only a version that compiles replaces the
//! current one, so a broken edit is logged and the previous mapping keeps serving. Requests
//! hold an `Arc` to the version they started with, so a reload never disturbs one in flight.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use engine::plan::{LoadError, Mapping};

struct Entry {
    current: RwLock<Arc<Mapping>>,
    modified: Mutex<Option<SystemTime>>,
}

pub struct Mappings {
    /// Static tenants' mappings are loaded at start; app tenants' are added when first needed.
    entries: RwLock<HashMap<PathBuf, Arc<Entry>>>,
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
                Arc::new(Entry {
                    current: RwLock::new(Arc::new(mapping)),
                    modified: Mutex::new(stamp),
                }),
            );
        }
        Ok(Mappings {
            entries: RwLock::new(entries),
        })
    }

    /// Loads `path` unless it is loaded already (app tenants' mappings); blocking work.
    pub fn ensure(&self, path: &Path) -> Result<(), LoadError> {
        if self.contains(path) {
            return Ok(());
        }
        let stamp = modified(path);
        let mapping = Mapping::load(path)?;
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.entry(path.to_path_buf()).or_insert_with(|| {
            Arc::new(Entry {
                current: RwLock::new(Arc::new(mapping)),
                modified: Mutex::new(stamp),
            })
        });
        Ok(())
    }

    pub fn contains(&self, path: &Path) -> bool {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(path)
    }

    pub fn get(&self, path: &Path) -> Option<Arc<Mapping>> {
        let entry = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)?
            .clone();
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
        let entries: Vec<(PathBuf, Arc<Entry>)> = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect();
        for (path, entry) in &entries {
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
