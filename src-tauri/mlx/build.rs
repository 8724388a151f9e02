//! Off Apple, libmlx is the shared library of the mlx-cpu wheel (see src-tauri/mlx-sys): the
//! binaries find it through an rpath. This crate's own tests get it here; the binaries that
//! link the crate add it from `DEP_HEADROOM_MLX_LIBDIR` in their build scripts.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MLX_LIBDIR");
    if let Ok(dir) = std::env::var("DEP_MLX_LIBDIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo::metadata=libdir={dir}");
    }
}
