//! Links the system libspeex (Debian: `libspeex-dev`). pkg-config is not required: Debian's
//! package installs `libspeex.so` on the default library path, which is all the linker needs.
//! `SPEEX_LIB_DIR` adds a search directory for a libspeex installed elsewhere.

fn main() {
    println!("cargo:rerun-if-env-changed=SPEEX_LIB_DIR");
    if let Ok(dir) = std::env::var("SPEEX_LIB_DIR") {
        println!("cargo:rustc-link-search=native={dir}");
    }
    println!("cargo:rustc-link-lib=speex");
}
