//! Generates `include/weft.h` from the `extern "C"` items under `src/capi/` with a pinned
//! cbindgen. The header is committed; `tests/header.rs` fails when the committed copy and the
//! freshly generated one differ.

use std::{env, fs, path::PathBuf};

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");

    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    let minor = env::var("CARGO_PKG_VERSION_MINOR").unwrap();
    let patch = env::var("CARGO_PKG_VERSION_PATCH").unwrap();
    let version = env::var("CARGO_PKG_VERSION").unwrap();
    let macros = format!(
        "\n/** Major version of the weft this header was generated for. */\n\
         #define WEFT_VERSION_MAJOR {major}\n\
         /** Minor version of the weft this header was generated for. */\n\
         #define WEFT_VERSION_MINOR {minor}\n\
         /** Patch version of the weft this header was generated for. */\n\
         #define WEFT_VERSION_PATCH {patch}\n\
         /** Version string of the weft this header was generated for; compare with weft_version(). */\n\
         #define WEFT_VERSION_STRING \"{version}\"\n\
         /** Version as one comparable number: major * 10000 + minor * 100 + patch. */\n\
         #define WEFT_VERSION_NUMBER ({major} * 10000 + {minor} * 100 + {patch})\n"
    );

    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&root)
        .with_config(config)
        .with_after_include(macros)
        .generate()
        .expect("cbindgen could not generate include/weft.h");
    let mut text = Vec::new();
    bindings.write(&mut text);

    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("weft.h");
    fs::write(&out, &text).expect("write OUT_DIR/weft.h");
    println!("cargo:rustc-env=WEFT_GENERATED_HEADER={}", out.display());

    // Keep the committed header in step for developers; the drift test compares against git.
    let committed = root.join("include").join("weft.h");
    if fs::read(&committed).ok().as_deref() != Some(&text[..]) {
        fs::create_dir_all(committed.parent().unwrap()).ok();
        fs::write(&committed, &text).expect("write include/weft.h");
    }
}
