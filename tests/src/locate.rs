//! Where the test inputs live: the media files `scripts/make-test-media.sh` generates into the
//! build area (`<target>/test-media`) with the ffmpeg 9 it links there, and the sipp scenarios kept in the repository
//! (`tests/sipp/`). The only place that knows these locations.
//!
//! Standard library only and free of `crate::` paths, because two crates that cannot depend
//! on this one compile this file as their own module (`#[path]`): core's integration tests
//! (core is below this crate) and bench-compare (which would otherwise pull in every runtime).

use std::path::{Path, PathBuf};

/// The workspace root: the nearest directory above the compiling crate holding `Cargo.lock`.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Cargo's build area: `CARGO_TARGET_DIR` when set (at run time, else when this was built;
/// relative to the workspace root if relative, as `scripts/make-test-media.sh` takes it),
/// otherwise `target/` in the workspace root.
pub fn target_dir() -> PathBuf {
    let set = std::env::var_os("CARGO_TARGET_DIR")
        .or_else(|| option_env!("CARGO_TARGET_DIR").map(Into::into))
        .filter(|dir| !dir.is_empty());
    match set {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The directory of the generated test media.
pub fn media_dir() -> PathBuf {
    target_dir().join("test-media")
}

/// The generated media file `name`; panics, saying how to make it, when it is not there.
pub fn media(name: &str) -> PathBuf {
    let path = media_dir().join(name);
    if !path.is_file() {
        panic!(
            "test media {} is missing: run scripts/make-test-media.sh \
             (scripts/test.sh runs it before cargo test)",
            path.display()
        );
    }
    path
}

/// ffmpeg 9 (imageio-ffmpeg's static build, for enhanced RTMP), which
/// `scripts/make-test-media.sh` links beside the media; panics, saying how to get it, when it
/// is not there.
pub fn ffmpeg9() -> PathBuf {
    let path = media_dir().join("ffmpeg9");
    if !path.is_file() {
        panic!(
            "{} is missing: run scripts/make-test-media.sh (it installs imageio-ffmpeg)",
            path.display()
        );
    }
    path
}

/// The directory of the repository's sipp scenarios.
pub fn sipp_dir() -> PathBuf {
    workspace_root().join("tests/sipp")
}

/// The sipp scenario `name` from `tests/sipp/`; panics when there is no such file.
pub fn sipp_scenario(name: &str) -> PathBuf {
    let path = sipp_dir().join(name);
    if !path.is_file() {
        panic!("sipp scenario {} does not exist", path.display());
    }
    path
}
