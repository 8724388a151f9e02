fn main() {
    // The MLX engine's libmlx (a shared library off Apple): found at run time through an rpath.
    if let Ok(dir) = std::env::var("DEP_HEADROOM_MLX_LIBDIR") {
        // First where the installed package puts it (scripts/bundle.sh: /usr/bin/headroom and
        // /usr/lib/headroom/mlx/lib/libmlx.so), then where this build found it.
        println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../lib/headroom/mlx/lib");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        // libmlx carries its own gguflib, whose `gguf_*` functions share their names (not
        // their layouts) with ggml's, linked in statically with llama.cpp. Exported from the
        // executable, ggml's would interpose on libmlx's own calls and crash MLX's GGUF reader;
        // nothing from the static libraries needs exporting.
        println!("cargo:rustc-link-arg=-Wl,--exclude-libs,ALL");
    }
    // Only the desktop app needs Tauri's build step (config, icons, capabilities).
    #[cfg(feature = "gui")]
    tauri_build::build();
}
