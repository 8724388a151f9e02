//! The config file. Anything that reads as settings must survive a save: written back as TOML,
//! it reads as the same settings (a save that changed them, or could not be read at the next
//! start, would lose the user's preferences).
#![no_main]

use headroom_core::config::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(settings) = Settings::from_toml(text, "fuzz") {
        let saved = toml::to_string_pretty(&settings).expect("settings always serialize");
        let again = Settings::from_toml(&saved, "saved")
            .unwrap_or_else(|e| panic!("saved settings do not read back: {e}\n{saved}"));
        assert_eq!(again, settings, "{saved}");
    }
});
