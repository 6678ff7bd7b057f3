#![allow(clippy::style)]

use std::path;

#[cfg(feature = "build-bindgen")]
extern crate bindgen;

#[cfg(feature = "build-bindgen")]
fn generate_lib() {
    #[derive(Debug)]
    struct ParseCallbacks;

    impl bindgen::callbacks::ParseCallbacks for ParseCallbacks {
        fn int_macro(&self, name: &str, _value: i64) -> Option<bindgen::callbacks::IntKind> {
            if name.starts_with("OPUS") {
                Some(bindgen::callbacks::IntKind::Int)
            } else {
                None
            }
        }
    }

    const PREPEND_LIB: &str = "
#![no_std]
#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
";

    let out = path::PathBuf::new().join("src").join("lib.rs");

    let bindings = bindgen::Builder::default().header("src/wrapper.h")
                                              .raw_line(PREPEND_LIB.trim_ascii())
                                              .parse_callbacks(Box::new(ParseCallbacks))
                                              .generate_comments(false)
                                              .layout_tests(false)
                                              .ctypes_prefix("core::ffi")
                                              .allowlist_type("[oO]pus.+")
                                              .allowlist_function("[oO]pus.+")
                                              .allowlist_var("[oO].+")
                                              .use_core()
                                              .rustfmt_configuration_file(Some("bindgen.rustfmt.toml".into()))
                                              .generate()
                                              .expect("Unable to generate bindings");

    bindings.write_to_file(out).expect("Couldn't write bindings!");
}

#[cfg(not(feature = "build-bindgen"))]
fn generate_lib() {
}

// relaycast patch (see PATCHES.md): the bundled libopus is compiled with the `cc` crate
// instead of CMake, so a machine with only Rust and a C compiler builds it. The source lists
// are read from libopus' own `*_sources.mk` files; the configuration is the portable
// floating-point build (no SIMD, no DRED/OSCE).
#[cfg(feature = "bundled")]
fn build() {
    const CURRENT_DIR: &str = "opus";

    for unsupported in ["dred", "osce", "fixed-point"] {
        let var = format!("CARGO_FEATURE_{}", unsupported.to_uppercase().replace('-', "_"));
        if std::env::var_os(var).is_some() {
            panic!("opusic-sys (relaycast's cc build): feature `{unsupported}` is not supported");
        }
    }

    // Every file named by `VAR = a.c \ b.c ...` in one of libopus' source lists.
    fn sources(list: &str, var: &str) -> Vec<path::PathBuf> {
        let file = path::Path::new(CURRENT_DIR).join(list);
        println!("cargo:rerun-if-changed={}", file.display());
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut out = Vec::new();
        let mut in_var = false;
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix(var) {
                if rest.trim_start().starts_with('=') {
                    in_var = true;
                    continue;
                }
            }
            if in_var {
                let name = line.trim_end_matches('\\').trim();
                if !name.is_empty() {
                    out.push(path::Path::new(CURRENT_DIR).join(name));
                }
                if !line.ends_with('\\') {
                    break;
                }
            }
        }
        assert!(!out.is_empty(), "no sources for {var} in {list}");
        out
    }

    let mut files = Vec::new();
    files.extend(sources("opus_sources.mk", "OPUS_SOURCES"));
    files.extend(sources("opus_sources.mk", "OPUS_SOURCES_FLOAT"));
    files.extend(sources("silk_sources.mk", "SILK_SOURCES"));
    files.extend(sources("silk_sources.mk", "SILK_SOURCES_FLOAT"));
    files.extend(sources("celt_sources.mk", "CELT_SOURCES"));

    let version = std::fs::read_to_string(path::Path::new(CURRENT_DIR).join("package_version"))
        .ok()
        .and_then(|v| v.trim().strip_prefix("PACKAGE_VERSION=").map(|v| v.trim_matches('"').to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());

    let mut cc = cc::Build::new();
    cc.files(&files)
      .include(path::Path::new(CURRENT_DIR).join("include"))
      .include(CURRENT_DIR)
      .include(path::Path::new(CURRENT_DIR).join("celt"))
      .include(path::Path::new(CURRENT_DIR).join("silk"))
      .include(path::Path::new(CURRENT_DIR).join("silk").join("float"))
      .define("OPUS_BUILD", None)
      .define("VAR_ARRAYS", None)
      .define("HAVE_LRINT", None)
      .define("HAVE_LRINTF", None)
      .define("DISABLE_DEBUG_FLOAT", None)
      .define("PACKAGE_VERSION", Some(format!("\"{version}\"").as_str()))
      .warnings(false);
    if cfg!(not(feature = "no-hardening")) {
        cc.define("ENABLE_HARDENING", None);
    }
    cc.compile("opus");
    for dir in ["include", "src", "celt", "silk"] {
        println!("cargo:rerun-if-changed={}", path::Path::new(CURRENT_DIR).join(dir).display());
    }
}

fn run() {
    generate_lib();

    //dont use any dynamic linking if bundling is requested
    #[cfg(feature = "bundled")]
    build();

    #[cfg(not(feature = "bundled"))]
    {
        enum LinkMode {
            Static,
            Dynamic,
        }

        impl core::fmt::Display for LinkMode {
            fn fmt(&self, fmt: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self {
                    Self::Static => fmt.write_str("static"),
                    Self::Dynamic => fmt.write_str("dylib"),
                }
            }
        }

        println!("cargo:rerun-if-env-changed=OPUS_LIB_DIR");
        println!("cargo:rerun-if-env-changed=OPUS_LIB_STATIC");

        let mode = match std::env::var("OPUS_LIB_STATIC") {
            Ok(is_static) if is_static.eq_ignore_ascii_case("true") => LinkMode::Static,
            _ => LinkMode::Dynamic
        };

        if let Ok(dir) = std::env::var("OPUS_LIB_DIR") {
            if !path::Path::new(&dir).exists() {
                println!("cargo:warning=env::OPUS_LIB_DIR='{}' does not exist", dir);
            }
            println!("cargo:rustc-link-search={}", dir);
        }
        //let the linker figure out the library path
        println!("cargo:rustc-link-lib={mode}=opus");
    }
}

fn main() {
    run()
}
