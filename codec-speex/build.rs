//! Links the system libspeex (Debian: `libspeex-dev`) when it is there. pkg-config is not
//! required: Debian's package installs `libspeex.so` on the default library path, which is
//! all the linker needs. `SPEEX_LIB_DIR` adds a search directory for a libspeex installed
//! elsewhere.
//!
//! Without the library the crate still builds, with stand-ins that never make a codec
//! ([`is_available`](crate::is_available) says false), so that `cargo run -p siprtmp` works on
//! a machine without libspeex-dev: the gateway then passes media through only, and says so.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=SPEEX_LIB_DIR");
    println!("cargo:rustc-check-cfg=cfg(speex_linked)");
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
                .filter(|p| p.join("libc.so.6").exists() || p.join("libspeex.so").exists())
                .map(|p| p.display().to_string()),
        );
    }
    if let Ok(dir) = std::env::var("SPEEX_LIB_DIR") {
        println!("cargo:rustc-link-search=native={dir}");
        dirs.insert(0, dir);
    }
    let found = dirs.iter().any(|d| {
        Path::new(d).join("libspeex.so").exists() || Path::new(d).join("libspeex.a").exists()
    });
    if found {
        println!("cargo:rustc-link-lib=speex");
        println!("cargo:rustc-cfg=speex_linked");
    } else {
        println!(
            "cargo:warning=libspeex not found (Debian: apt-get install libspeex-dev): built \
             without it, so the gateway cannot transcode Speex to G.711"
        );
    }
}
