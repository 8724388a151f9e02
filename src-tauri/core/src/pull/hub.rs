//! What a pull names on the Hub: a repo (`org/name`) and a file in it, checked before anything
//! is fetched, and the URL it is fetched from. The endpoint is `HF_ENDPOINT` as huggingface_hub
//! reads it (a mirror, or a local server in the tests), else `https://huggingface.co`.

use std::fmt;
use std::path::{Path, PathBuf};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// An environment variable, unless it is unset or blank.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The Hub's address: `HF_ENDPOINT`, else huggingface.co.
pub fn endpoint() -> String {
    var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
}

/// Whether `url` is on the Hub itself (`endpoint`'s scheme, host and port), where the token
/// may go; the storage the Hub redirects to is not.
pub fn on_hub(url: &str, endpoint: &str) -> bool {
    let origin = |u: &str| {
        reqwest::Url::parse(u).ok().map(|u| {
            (
                u.scheme().to_string(),
                u.host_str().map(str::to_string),
                u.port_or_known_default(),
            )
        })
    };
    origin(url).is_some_and(|o| Some(o) == origin(endpoint))
}

/// The token for gated repos, in this order: the one set in Preferences (`hub_token`), then
/// `HF_TOKEN` (or its old name), then the file `huggingface-cli login` writes (`HF_TOKEN_PATH`,
/// else `token` in `HF_HOME`, else in `~/.cache/huggingface`), so a user who has logged in
/// with Hugging Face's own tools needs to do nothing more.
pub fn token(setting: Option<&str>) -> Option<String> {
    let file = var("HF_TOKEN_PATH").map(PathBuf::from).or_else(|| {
        var("HF_HOME")
            .map(PathBuf::from)
            .or_else(|| {
                directories::BaseDirs::new().map(|d| d.home_dir().join(".cache/huggingface"))
            })
            .map(|home| home.join("token"))
    });
    choose_token(
        setting,
        var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN")),
        file.as_deref(),
    )
}

/// [`token`]'s choice, given what each place holds.
fn choose_token(setting: Option<&str>, env: Option<String>, file: Option<&Path>) -> Option<String> {
    let clean = |t: &str| Some(t.trim().to_string()).filter(|t| !t.is_empty());
    setting.and_then(clean).or(env).or_else(|| {
        let text = std::fs::read_to_string(file?).ok()?;
        clean(&text)
    })
}

/// A file in a Hub repo: a GGUF file pulled on its own, or one file of an MLX repo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    pub repo: String,
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error(
        "'{0}' is not a Hugging Face repo: expected 'org/name' (letters, digits, '-', '_', '.')"
    )]
    Repo(String),
    #[error("'{0}' is not a GGUF file name in a repo: expected a path like 'model-Q4_K_M.gguf', with no '..' and no leading '/'")]
    File(String),
}

/// Checks a repo name: `org/name`, each part of letters, digits, `-`, `_` and `.`, as the Hub
/// allows them; nothing that could step out of a URL path or a folder.
pub fn check_repo(repo: &str) -> Result<(), HubError> {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() == 2 && parts.iter().all(|p| part(p)) {
        Ok(())
    } else {
        Err(HubError::Repo(repo.to_string()))
    }
}

/// Whether `path` is a relative file path that stays where it is joined: no empty, `.` or `..`
/// segment, no backslash or control character.
fn is_confined_path(path: &str) -> bool {
    path.len() <= 255
        && path.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && !s.chars().any(|c| c.is_control() || c == '\\')
        })
}

impl HubFile {
    /// A GGUF file, pulled on its own.
    pub fn new(repo: &str, file: &str) -> Result<Self, HubError> {
        check_repo(repo)?;
        let name = file.rsplit('/').next().unwrap_or(file);
        if !(file.ends_with(".gguf") && is_confined_path(file)) || name.starts_with('.') {
            return Err(HubError::File(file.to_string()));
        }
        Ok(Self {
            repo: repo.to_string(),
            file: file.to_string(),
        })
    }

    /// Any file of a repo (one of an MLX model's files).
    pub fn in_repo(repo: &str, file: &str) -> Result<Self, HubError> {
        check_repo(repo)?;
        if !is_confined_path(file) {
            return Err(HubError::File(file.to_string()));
        }
        Ok(Self {
            repo: repo.to_string(),
            file: file.to_string(),
        })
    }

    /// Where the file is fetched from: `<endpoint>/<repo>/resolve/main/<file>`, which the Hub
    /// redirects to its storage for large (LFS) files.
    pub fn url(&self, endpoint: &str) -> String {
        format!(
            "{}/{}/resolve/main/{}",
            endpoint.trim_end_matches('/'),
            self.repo,
            self.file
        )
    }

    /// The file's name in the model folder: the repo's file name, so the model's id is that name
    /// without `.gguf`, as for any file there.
    pub fn local_name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }

    /// The model id the pulled file will have.
    pub fn model_id(&self) -> &str {
        let name = self.local_name();
        name.strip_suffix(".gguf").unwrap_or(name)
    }
}

impl fmt::Display for HubFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.repo, self.file)
    }
}

/// The sha256 an LFS file's `X-Linked-Etag` (or `ETag`) names, if it names one: 64 hex digits,
/// quoted or not, perhaps weak (`W/"…"`). A small file's ETag is its git blob id (40 hex
/// digits): not a sha256, so there is nothing to check it against but its length.
pub fn sha256_of_etag(etag: &str) -> Option<String> {
    let bare = etag.trim().trim_start_matches("W/").trim_matches('"');
    (bare.len() == 64 && bare.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| bare.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repos_and_files_are_checked() {
        let file = HubFile::new(
            "bartowski/SmolLM2-135M-Instruct-GGUF",
            "SmolLM2-135M-Instruct-Q4_1.gguf",
        )
        .expect("valid");
        assert_eq!(
            file.url("http://127.0.0.1:9/"),
            "http://127.0.0.1:9/bartowski/SmolLM2-135M-Instruct-GGUF/resolve/main/SmolLM2-135M-Instruct-Q4_1.gguf"
        );
        assert_eq!(file.model_id(), "SmolLM2-135M-Instruct-Q4_1");
        let nested = HubFile::new("org/repo", "Q8_0/model-Q8_0.gguf").expect("valid");
        assert_eq!(nested.local_name(), "model-Q8_0.gguf");
        for repo in [
            "org",
            "org/repo/x",
            "../x",
            "org/.hidden",
            "org/re po",
            "/repo",
            "org/",
        ] {
            assert_eq!(
                HubFile::new(repo, "m.gguf"),
                Err(HubError::Repo(repo.into())),
                "{repo}"
            );
        }
        assert_eq!(
            HubFile::new("org/repo", "x.gguf.gguf")
                .expect("valid")
                .model_id(),
            "x.gguf"
        );
        assert!(on_hub(
            "https://huggingface.co/o/r/resolve/main/c.json",
            "https://huggingface.co"
        ));
        assert!(!on_hub(
            "https://cas-bridge.xethub.hf.co/x",
            "https://huggingface.co"
        ));
        assert!(!on_hub("http://huggingface.co/x", "https://huggingface.co"));
        for file in [
            ".gguf",
            "a/.hidden.gguf",
            "m.bin",
            "../m.gguf",
            "a/../m.gguf",
            "/m.gguf",
            "a//m.gguf",
            "a\\m.gguf",
            "",
        ] {
            assert_eq!(
                HubFile::new("org/repo", file),
                Err(HubError::File(file.into())),
                "{file}"
            );
        }
    }

    #[test]
    fn the_token_is_the_settings_then_the_environments_then_the_login_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("token");
        std::fs::write(&file, "hf_from_login\n").expect("write");
        let env = || Some("hf_from_env".to_string());
        assert_eq!(
            choose_token(Some("hf_set"), env(), Some(&file)).as_deref(),
            Some("hf_set")
        );
        assert_eq!(
            choose_token(Some("  "), env(), Some(&file)).as_deref(),
            Some("hf_from_env")
        );
        assert_eq!(
            choose_token(None, None, Some(&file)).as_deref(),
            Some("hf_from_login")
        );
        assert_eq!(
            choose_token(None, None, Some(&dir.path().join("none"))),
            None
        );
        assert_eq!(choose_token(None, None, None), None);
    }

    #[test]
    fn etags_name_a_sha256_only_when_they_are_one() {
        let sha = "a".repeat(64);
        assert_eq!(sha256_of_etag(&format!("\"{sha}\"")), Some(sha.clone()));
        assert_eq!(
            sha256_of_etag(&format!("W/\"{}\"", sha.to_uppercase())),
            Some(sha.clone())
        );
        assert_eq!(sha256_of_etag(&format!("\"{}\"", "b".repeat(40))), None);
        assert_eq!(sha256_of_etag("\"not-hex\""), None);
    }
}
