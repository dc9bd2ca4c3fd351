//! Records the target triple, so the binary can find the static runner that `just runner`
//! builds at `target/<triple>/release/sandbox-runner` (the runner is built with an explicit
//! `--target`, which puts it under the triple's folder).

fn main() {
    let target = std::env::var("TARGET").expect("cargo sets TARGET for build scripts");
    println!("cargo:rustc-env=POOL_INSPECT_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
