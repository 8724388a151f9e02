fn main() {
    // Only the desktop app needs Tauri's build step (config, icons, capabilities).
    #[cfg(feature = "gui")]
    tauri_build::build();
}
