//! Who may reach the server: where it listens and the key it asks for.
//!
//! Loopback is the default and needs no key: only programs on this machine can connect, and the
//! `Host`/`Origin` checks keep web pages out. Listening anywhere else shares the models with the
//! network, so it is a deliberate setting and is refused without an API key.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where the server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bind {
    /// 127.0.0.1 and [::1].
    #[default]
    Loopback,
    /// One address of this machine (`0.0.0.0` or `::` for all of them).
    Address(IpAddr),
}

impl Bind {
    /// The address listened on first (for loopback, IPv4; [::1] follows on the same port).
    pub fn first_ip(&self) -> IpAddr {
        match self {
            Bind::Loopback => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            Bind::Address(ip) => *ip,
        }
    }

    /// Whether anything beyond this machine can connect.
    pub fn is_shared(&self) -> bool {
        match self {
            Bind::Loopback => false,
            Bind::Address(ip) => !ip.is_loopback(),
        }
    }
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bind::Loopback => f.write_str("loopback"),
            Bind::Address(ip) => write!(f, "{ip}"),
        }
    }
}

impl FromStr for Bind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("loopback") {
            return Ok(Bind::Loopback);
        }
        text.parse().map(Bind::Address).map_err(|_| {
            "\"loopback\" or one IP address of this machine, such as \"0.0.0.0\"".to_string()
        })
    }
}

impl Serialize for Bind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Bind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The shortest API key accepted: long enough that guessing over HTTP is hopeless.
pub const MIN_API_KEY_LEN: usize = 16;

/// Why `key` cannot be an API key, if it cannot: it travels in an HTTP header, so printable
/// ASCII without spaces, and not so short it can be guessed.
pub fn api_key_problem(key: &str) -> Option<String> {
    if key.len() < MIN_API_KEY_LEN || key.len() > 256 {
        return Some(format!(
            "from {MIN_API_KEY_LEN} to 256 characters (this one has {})",
            key.chars().count()
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Some("printable ASCII characters without spaces".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_reads_and_writes_back() {
        for text in ["loopback", "0.0.0.0", "192.0.2.2", "::", "127.0.0.1"] {
            let bind: Bind = text.parse().expect(text);
            assert_eq!(bind.to_string(), text);
        }
        assert!(!Bind::Loopback.is_shared());
        assert!(!"127.0.0.1".parse::<Bind>().expect("ip").is_shared());
        assert!(!"::1".parse::<Bind>().expect("ip").is_shared());
        assert!("0.0.0.0".parse::<Bind>().expect("ip").is_shared());
        assert!("localhost:80".parse::<Bind>().is_err());
        assert!("everywhere".parse::<Bind>().is_err());
    }

    #[test]
    fn keys_must_be_long_printable_and_unspaced() {
        assert!(api_key_problem("0123456789abcdef").is_none());
        assert!(api_key_problem("short").is_some());
        assert!(api_key_problem("0123456789 abcdef").is_some());
        assert!(api_key_problem("0123456789abcdéf").is_some());
        assert!(api_key_problem(&"k".repeat(257)).is_some());
    }
}
