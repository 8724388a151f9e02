//! What a pull names on the Hub: a repo (`org/name`) and a file in it, checked before anything
//! is fetched, and the URL it is fetched from. The endpoint is `HF_ENDPOINT` as huggingface_hub
//! reads it (a mirror, or a local server in the tests), else `https://huggingface.co`.

use std::fmt;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A GGUF file in a Hub repo.
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

impl HubFile {
    pub fn new(repo: &str, file: &str) -> Result<Self, HubError> {
        let part = |p: &str| {
            !p.is_empty()
                && p.len() <= 96
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() != 2 || !parts.iter().all(|p| part(p)) {
            return Err(HubError::Repo(repo.to_string()));
        }
        let segments: Vec<&str> = file.split('/').collect();
        let fine = file.len() <= 255
            && file.ends_with(".gguf")
            && segments.iter().all(|s| {
                !s.is_empty()
                    && *s != "."
                    && *s != ".."
                    && !s.chars().any(|c| c.is_control() || c == '\\')
            });
        if !fine {
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
        self.local_name().trim_end_matches(".gguf")
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
        for file in [
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
