//! Compiled plugins kept on disk, and mapped back into memory as they are.
//!
//! wasmtime's own cache compresses what it keeps (zstd) and updates a
//! usage file on every hit: decompressing was about a sixth of a warm
//! `wsgate run`'s CPU time (perf), before the plugin's first instruction.
//! Here a plugin is kept as wasmtime serialised it, one file per plugin and
//! engine, and a hit is `Component::deserialize_file`: the file is mapped,
//! not read, and only the pages that run are touched.
//!
//! The directory must be writable only by the user wsgate runs as: what is
//! in it is loaded as machine code, without a check beyond wasmtime's that
//! it was made by a compatible engine.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The most compiled plugins kept: past it, the least recently written go.
/// Each distinct build of a plugin is a new entry.
const MAX_ENTRIES: usize = 64;

/// The file name suffix of an entry.
const SUFFIX: &str = ".cwasm";

/// A directory of compiled plugins.
#[derive(Debug, Clone)]
pub(super) struct CodeCache {
    dir: PathBuf,
}

impl CodeCache {
    /// The cache in `dir`, created if missing.
    pub(super) fn open(dir: &Path) -> std::io::Result<CodeCache> {
        std::fs::create_dir_all(dir)?;
        Ok(CodeCache { dir: dir.to_owned() })
    }

    /// The plugin `wasm` compiled for `engine`: from the cache when it is
    /// there and loads, else compiled with `compile` and kept. A cache that
    /// cannot be written costs the next start a compile, nothing more.
    pub(super) fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        compile: impl FnOnce() -> wasmtime::Result<Component>,
    ) -> wasmtime::Result<Component> {
        let path = self.dir.join(key(engine, wasm) + SUFFIX);
        if path.is_file() {
            // SAFETY: the file was written by `keep` below from wasmtime's
            // own serialisation, under a name that binds it to these bytes
            // and this engine's settings, and it is replaced by a rename,
            // never written in place, so a mapping of it never changes.
            // (The directory is the operator's, as the module says.)
            if let Ok(component) = unsafe { Component::deserialize_file(engine, &path) } {
                return Ok(component);
            }
        }
        let component = compile()?;
        self.keep(&path, &component);
        Ok(component)
    }

    /// Writes `component` to `path` (through a temporary file and a
    /// rename), then trims the cache to [`MAX_ENTRIES`]. Failures are
    /// ignored: see [`CodeCache::load`].
    fn keep(&self, path: &Path, component: &Component) {
        let Ok(bytes) = component.serialize() else {
            return;
        };
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&temporary, &bytes).is_err() || std::fs::rename(&temporary, path).is_err() {
            let _ = std::fs::remove_file(&temporary);
            return;
        }
        self.trim();
    }

    /// Removes the least recently written entries beyond [`MAX_ENTRIES`].
    fn trim(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut kept: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(SUFFIX))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if kept.len() <= MAX_ENTRIES {
            return;
        }
        kept.sort();
        for (_, old) in &kept[..kept.len() - MAX_ENTRIES] {
            let _ = std::fs::remove_file(old);
        }
    }
}

/// An entry's name: SHA-256 of the plugin's bytes and of what makes
/// compiled code fit an engine (wasmtime's version and settings).
fn key(engine: &Engine, wasm: &[u8]) -> String {
    let mut digest = Sha256::new();
    digest.update(wasm);
    engine
        .precompile_compatibility_hash()
        .hash(&mut DigestHasher(&mut digest));
    digest.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds what a [`Hash`] writes into a SHA-256 digest.
struct DigestHasher<'a>(&'a mut Sha256);

impl Hasher for DigestHasher<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Only the digest is read, never this.
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component there is.
    const EMPTY: &str = "(component)";

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).unwrap()
    }

    fn scratch(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wsgate-cache-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Loads `wasm` through `cache`; 1 when it had to be compiled, else 0.
    fn load_counting(cache: &CodeCache, engine: &Engine, wasm: &[u8]) -> usize {
        let mut compiles = 0;
        cache
            .load(engine, wasm, || {
                compiles += 1;
                Component::new(engine, wasm)
            })
            .unwrap();
        compiles
    }

    #[test]
    fn a_plugin_is_compiled_once_then_mapped_from_the_cache() {
        let dir = scratch("once");
        let cache = CodeCache::open(&dir).unwrap();
        let engine = engine();
        let wasm = wat::parse_str(EMPTY).unwrap();
        let compiles: usize = (0..3).map(|_| load_counting(&cache, &engine, &wasm)).sum();
        assert_eq!(compiles, 1);
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(files.len(), 1, "one entry, no temporary left: {files:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_entry_that_does_not_load_is_compiled_again_and_replaced() {
        let dir = scratch("bad");
        let cache = CodeCache::open(&dir).unwrap();
        let engine = engine();
        let wasm = wat::parse_str(EMPTY).unwrap();
        let path = dir.join(key(&engine, &wasm) + SUFFIX);
        std::fs::write(&path, b"not compiled code").unwrap();
        assert_eq!(load_counting(&cache, &engine, &wasm), 1);
        assert!(unsafe { Component::deserialize_file(&engine, &path) }.is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn another_engine_or_other_bytes_is_another_entry() {
        let wasm = wat::parse_str(EMPTY).unwrap();
        let other = wat::parse_str("(component (core module))").unwrap();
        let plain = engine();
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let epochs = Engine::new(&config).unwrap();
        assert_eq!(key(&plain, &wasm), key(&plain, &wasm));
        assert_ne!(key(&plain, &wasm), key(&plain, &other));
        assert_ne!(key(&plain, &wasm), key(&epochs, &wasm));
    }

    #[test]
    fn the_cache_keeps_at_most_its_bound() {
        let dir = scratch("trim");
        let cache = CodeCache::open(&dir).unwrap();
        for i in 0..MAX_ENTRIES + 3 {
            std::fs::write(dir.join(format!("{i:04}{SUFFIX}")), b"x").unwrap();
        }
        std::fs::write(dir.join("other-file"), b"x").unwrap();
        cache.trim();
        let left = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(left, MAX_ENTRIES + 1, "entries trimmed, other files left alone");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
