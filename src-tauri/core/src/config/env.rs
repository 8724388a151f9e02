//! `HEADROOM_<SETTING>` environment variables.

use std::path::PathBuf;
use std::str::FromStr;

use super::{SettingError, Settings};
use crate::vocab::{parse_bytes, ByteSize};

pub(super) fn apply(
    settings: &mut Settings,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), SettingError> {
    // The one-size margin first, so the per-tier variables refine it whatever the order.
    let mut vars: Vec<(String, String)> = vars.into_iter().collect();
    vars.sort_by_key(|(key, _)| key != "HEADROOM_HEADROOM_MARGIN");
    for (key, value) in vars {
        match key.as_str() {
            "HEADROOM_PORT" => {
                settings.port = parse(&key, "port", &value, "a port number from 0 to 65535")?
            }
            "HEADROOM_BIND" => {
                settings.bind = value.parse().map_err(|allowed| SettingError {
                    source_name: key.clone(),
                    setting: "bind".into(),
                    value: format!("{value:?}"),
                    allowed,
                })?
            }
            // An empty value clears a key set in the file, as `unset` would for a shell.
            "HEADROOM_API_KEY" => {
                settings.api_key = Some(value.trim().to_string()).filter(|k| !k.is_empty())
            }
            "HEADROOM_HUB_TOKEN" => {
                settings.hub_token = Some(value.trim().to_string()).filter(|k| !k.is_empty())
            }
            "HEADROOM_MAX_CONNECTIONS" => {
                settings.max_connections = parse(&key, "max_connections", &value, "a whole number")?
            }
            "HEADROOM_THREADS" => {
                settings.threads = Some(parse(&key, "threads", &value, "a whole number")?)
            }
            "HEADROOM_PARALLEL" => {
                settings.parallel = parse(&key, "parallel", &value, "a whole number")?
            }
            "HEADROOM_CONTEXT_SIZE" => {
                settings.context_size =
                    parse(&key, "context_size", &value, "a whole number of tokens")?
            }
            "HEADROOM_QUEUE_SIZE" => {
                settings.queue_size = parse(&key, "queue_size", &value, "a whole number")?
            }
            "HEADROOM_MEMORY_LIMIT" => {
                settings.memory_limit = value.parse().map_err(|allowed| SettingError {
                    source_name: key.clone(),
                    setting: "memory_limit".into(),
                    value: format!("{value:?}"),
                    allowed,
                })?
            }
            "HEADROOM_HEADROOM_MARGIN" => {
                settings.headroom_margin = super::HeadroomMargins::flat(parse(
                    &key,
                    "headroom_margin",
                    &value,
                    "a size such as \"2GiB\"",
                )?)
            }
            "HEADROOM_HEADROOM_MARGIN_RELAXED"
            | "HEADROOM_HEADROOM_MARGIN_CONSTRAINED"
            | "HEADROOM_HEADROOM_MARGIN_CRITICAL" => {
                let tier = key
                    .trim_start_matches("HEADROOM_HEADROOM_MARGIN_")
                    .to_lowercase();
                let size =
                    super::headroom_margin::parse_gb(&value).ok_or_else(|| SettingError {
                        source_name: key.clone(),
                        setting: format!("headroom_margin.{tier}"),
                        value: format!("{value:?}"),
                        allowed: "GiB as a number such as 1.5, or a size such as \"1536MiB\""
                            .into(),
                    })?;
                let m = &mut settings.headroom_margin;
                match tier.as_str() {
                    "relaxed" => m.relaxed = size,
                    "constrained" => m.constrained = size,
                    _ => m.critical = size,
                }
            }
            "HEADROOM_MEMORY_FLOOR" => {
                settings.memory_floor =
                    parse(&key, "memory_floor", &value, "a size such as \"1GiB\"")?
            }
            "HEADROOM_IDLE_TIMEOUT" => {
                let invalid = |allowed: String| SettingError {
                    source_name: key.clone(),
                    setting: "idle_timeout".into(),
                    value: format!("{value:?}"),
                    allowed,
                };
                if value.trim_start().starts_with('-') {
                    return Err(invalid(
                        "not negative; write \"never\" to keep models loaded".into(),
                    ));
                }
                settings.idle_timeout =
                    crate::vocab::parse_idle_timeout(&value).map_err(invalid)?;
            }
            "HEADROOM_MAP_WEIGHTS" => {
                settings.map_weights = parse_bool(&key, "map_weights", &value)?
            }
            "HEADROOM_KV_CACHE_TYPE" => {
                settings.kv_cache_type = value.parse().map_err(|why: String| SettingError {
                    source_name: key.clone(),
                    setting: "kv_cache_type".into(),
                    value: format!("{value:?}"),
                    allowed: why,
                })?
            }
            "HEADROOM_ENGINE" => {
                settings.engine = value.parse().map_err(|why: String| SettingError {
                    source_name: key.clone(),
                    setting: "engine".into(),
                    value: format!("{value:?}"),
                    allowed: why,
                })?
            }
            "HEADROOM_MLX_CACHE_LIMIT" => {
                settings.mlx_cache_limit =
                    ByteSize(parse_bytes(&value).ok_or_else(|| SettingError {
                        source_name: key.clone(),
                        setting: "mlx_cache_limit".into(),
                        value: format!("{value:?}"),
                        allowed: "a size (\"256MiB\", \"1GB\", bytes; 0 = keep nothing)".into(),
                    })?)
            }
            "HEADROOM_CONVERSATION_CACHE" => {
                settings.conversation_cache =
                    ByteSize(parse_bytes(&value).ok_or_else(|| SettingError {
                        source_name: key.clone(),
                        setting: "conversation_cache".into(),
                        value: format!("{value:?}"),
                        allowed: "a size (\"2GiB\", \"500MB\", bytes; 0 = off)".into(),
                    })?)
            }
            "HEADROOM_CACHE_PROMPT" => {
                settings.cache_prompt = parse_bool(&key, "cache_prompt", &value)?
            }
            "HEADROOM_NOTIFICATIONS" => {
                settings.notifications = parse_bool(&key, "notifications", &value)?
            }
            "HEADROOM_LAUNCH_AT_LOGIN" => {
                settings.launch_at_login = parse_bool(&key, "launch_at_login", &value)?
            }
            "HEADROOM_PRESSURE_ELEVATED" => {
                settings.pressure.elevated =
                    parse(&key, "pressure.elevated", &value, "a percentage")?
            }
            "HEADROOM_PRESSURE_CONSTRAINED" => {
                settings.pressure.constrained =
                    parse(&key, "pressure.constrained", &value, "a percentage")?
            }
            "HEADROOM_PRESSURE_CRITICAL" => {
                settings.pressure.critical =
                    parse(&key, "pressure.critical", &value, "a percentage")?
            }
            "HEADROOM_PRESSURE_EMERGENCY" => {
                settings.pressure.emergency =
                    parse(&key, "pressure.emergency", &value, "a percentage")?
            }
            // Comma-separated model ids; HEADROOM_PRELOAD is the old name.
            "HEADROOM_PINNED" | "HEADROOM_PRELOAD" => {
                settings.pinned = value
                    .split(',')
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                    .map(String::from)
                    .collect();
            }
            // Comma-separated source names; empty for none.
            "HEADROOM_SOURCES" => {
                let mut sources = Vec::new();
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let kind =
                        crate::models::SourceKind::from_name(name).ok_or_else(|| SettingError {
                            source_name: key.to_string(),
                            setting: "sources".to_string(),
                            value: format!("{name:?}"),
                            allowed: "comma-separated: huggingface, lm_studio, ollama, llama_cpp"
                                .to_string(),
                        })?;
                    if !sources.contains(&kind) {
                        sources.push(kind);
                    }
                }
                settings.sources = sources;
            }
            // Colon-separated, like PATH; these come before the file's folders.
            "HEADROOM_MODELS_DIR" => {
                let mut dirs: Vec<PathBuf> = std::env::split_paths(&value)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect();
                dirs.append(&mut settings.models_dirs);
                settings.models_dirs = dirs;
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_bool(key: &str, setting: &str, value: &str) -> Result<bool, SettingError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(SettingError {
            source_name: key.to_string(),
            setting: setting.to_string(),
            value: format!("{value:?}"),
            allowed: "true or false (also 1/0, yes/no, on/off)".to_string(),
        }),
    }
}

fn parse<T: FromStr>(
    key: &str,
    setting: &str,
    value: &str,
    allowed: &str,
) -> Result<T, SettingError> {
    value.trim().parse().map_err(|_| SettingError {
        source_name: key.to_string(),
        setting: setting.to_string(),
        value: format!("{value:?}"),
        allowed: allowed.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut s = Settings {
            models_dirs: vec!["/from-file".into()],
            ..Settings::default()
        };
        s.apply_env(vars(&[
            ("HEADROOM_PORT", "8123"),
            ("HEADROOM_MODELS_DIR", "/a:/b"),
            ("HEADROOM_PARALLEL", "3"),
            ("PATH", "/usr/bin"),
        ]))
        .expect("applies");
        assert_eq!(s.port, 8123);
        assert_eq!(s.parallel, 3);
        assert_eq!(
            s.models_dirs,
            vec![
                PathBuf::from("/a"),
                PathBuf::from("/b"),
                PathBuf::from("/from-file")
            ]
        );
    }

    #[test]
    fn switches_and_thresholds_from_the_environment() {
        let mut s = Settings::default();
        s.apply_env(vars(&[
            ("HEADROOM_NOTIFICATIONS", "off"),
            ("HEADROOM_PRESSURE_CRITICAL", "88"),
            ("HEADROOM_IDLE_TIMEOUT", "30m"),
        ]))
        .expect("applies");
        assert!(!s.notifications);
        s.apply_env(vars(&[
            ("HEADROOM_HEADROOM_MARGIN_RELAXED", "1"),
            ("HEADROOM_HEADROOM_MARGIN_CRITICAL", "3.5"),
        ]))
        .expect("applies");
        assert_eq!(s.headroom_margin.relaxed.0, 1 << 30);
        assert_eq!(s.headroom_margin.constrained.0, 2 << 30);
        assert_eq!(s.headroom_margin.critical.0, 7 << 29);
        let e = Settings::default()
            .apply_env(vars(&[("HEADROOM_HEADROOM_MARGIN_CONSTRAINED", "0.5")]))
            .unwrap_err();
        assert_eq!(e.setting, "headroom_margin.constrained");
        assert_eq!(s.pressure.critical, 88.0);
        assert_eq!(s.idle_timeout.to_string(), "30m");
        let e = s
            .apply_env(vars(&[("HEADROOM_PRESSURE_CRITICAL", "99")]))
            .unwrap_err();
        assert_eq!(e.setting, "pressure");
        let e = Settings::default()
            .apply_env(vars(&[("HEADROOM_NOTIFICATIONS", "maybe")]))
            .unwrap_err();
        assert_eq!(e.setting, "notifications");
        let e = Settings::default()
            .apply_env(vars(&[("HEADROOM_IDLE_TIMEOUT", "-1")]))
            .unwrap_err();
        assert_eq!(e.setting, "idle_timeout");
    }

    #[test]
    fn a_bad_variable_is_named() {
        let mut s = Settings::default();
        let e = s
            .apply_env(vars(&[("HEADROOM_PORT", "99999")]))
            .unwrap_err();
        assert_eq!(e.source_name, "HEADROOM_PORT");
        let e = s
            .apply_env(vars(&[("HEADROOM_PARALLEL", "0")]))
            .unwrap_err();
        assert_eq!(e.setting, "parallel");
    }
}
