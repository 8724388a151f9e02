fn main() {
    // The MLX engine's libmlx (a shared library off Apple): found at run time through an rpath.
    if let Ok(dir) = std::env::var("DEP_HEADROOM_MLX_LIBDIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    // Only the desktop app needs Tauri's build step (config, icons, capabilities).
    #[cfg(feature = "gui")]
    tauri_build::build();
}
