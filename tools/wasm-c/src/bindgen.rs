//! WIT → C bindings with the `wit-bindgen-c` crate (what `wit-bindgen c` does).

use std::path::{Path, PathBuf};

use wit_bindgen_core::Files;
use wit_parser::Resolve;

use crate::Error;

/// The generated files.
#[derive(Debug, Clone)]
pub struct Bindings {
    /// File stem: the world name in snake case, e.g. `stream_transform`.
    pub stem: String,
    pub c: PathBuf,
    pub h: PathBuf,
    /// The object file carrying the component type; link it into the module.
    pub object: PathBuf,
}

/// Generate C bindings for `world` of the WIT package at `wit` into `out_dir`.
pub fn bindgen(wit: &Path, world: &str, out_dir: &Path) -> Result<Bindings, Error> {
    let mut resolve = Resolve::default();
    let (pkg, _) =
        resolve.push_path(wit).map_err(|e| Error::Wit { path: wit.to_path_buf(), detail: format!("{e:#}") })?;
    let world_id = resolve.select_world(&[pkg], Some(world)).map_err(|e| Error::World {
        world: world.to_string(),
        path: wit.to_path_buf(),
        detail: format!("{e:#}"),
    })?;
    let mut files = Files::default();
    let mut generator = wit_bindgen_c::Opts::default().build();
    generator.generate(&mut resolve, world_id, &mut files).map_err(|e| Error::Bindgen(format!("{e:#}")))?;
    std::fs::create_dir_all(out_dir).map_err(|source| Error::Io {
        what: "creating",
        path: out_dir.to_path_buf(),
        source,
    })?;
    for (name, contents) in files.iter() {
        let path = out_dir.join(name);
        // Leave unchanged files alone so that make-style rebuilds stay incremental.
        if std::fs::read(&path).is_ok_and(|old| old == contents) {
            continue;
        }
        std::fs::write(&path, contents).map_err(|source| Error::Io { what: "writing", path, source })?;
    }
    let stem = world.replace('-', "_");
    Ok(Bindings {
        c: out_dir.join(format!("{stem}.c")),
        h: out_dir.join(format!("{stem}.h")),
        object: out_dir.join(format!("{stem}_component_type.o")),
        stem,
    })
}
