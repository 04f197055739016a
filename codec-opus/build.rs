//! Links the system libopus (Debian: `libopus-dev`) when it is there. pkg-config is not
//! required: Debian's package installs `libopus.so` on the default library path, which is all
//! the linker needs (the runtime package `libopus0` alone has only `libopus.so.0`, which the
//! linker does not look for). `OPUS_LIB_DIR` adds a search directory for a libopus installed
//! elsewhere.
//!
//! Without the library the crate still builds, with stand-ins that never make a codec
//! ([`is_available`](crate::is_available) says false), so that `cargo run -p siprtmp` works on
//! a machine without libopus-dev: the gateway then passes Opus through only, and says so.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=OPUS_LIB_DIR");
    println!("cargo:rustc-check-cfg=cfg(opus_linked)");
    let mut dirs: Vec<String> = ["/usr/lib", "/usr/lib64", "/usr/local/lib", "/lib"]
        .iter()
        .map(|d| d.to_string())
        .collect();
    // Debian's multiarch directories (/usr/lib/x86_64-linux-gnu and the like).
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("libc.so.6").exists() || p.join("libopus.so").exists())
                .map(|p| p.display().to_string()),
        );
    }
    if let Ok(dir) = std::env::var("OPUS_LIB_DIR") {
        println!("cargo:rustc-link-search=native={dir}");
        dirs.insert(0, dir);
    }
    let found = dirs.iter().any(|d| {
        Path::new(d).join("libopus.so").exists() || Path::new(d).join("libopus.a").exists()
    });
    if found {
        println!("cargo:rustc-link-lib=opus");
        println!("cargo:rustc-cfg=opus_linked");
    } else {
        println!(
            "cargo:warning=libopus not found (Debian: apt-get install libopus-dev): built \
             without it, so the gateway cannot transcode an Opus client's audio"
        );
    }
}
