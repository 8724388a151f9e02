//! What a Hub repo holds, from its file listing (`GET /api/models/<repo>/tree/main`): an MLX
//! model (a `config.json` and `.safetensors` weights, as mlx-community publishes them), GGUF
//! files to choose from, or neither. An MLX repo is pulled as a folder of the files a model
//! needs: the same patterns mlx-lm downloads, less its Python code, which Headroom never runs.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, LINK};
use serde::Deserialize;

use super::hub::{check_repo, HubError, HubFile};
use super::transfer::{refusal, TransferError};

/// The most entries a listing is read to: far beyond any model repo, short of a repo of
/// datasets that would take minutes to page through.
const MAX_ENTRIES: usize = 10_000;

/// One entry of the Hub's tree listing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TreeEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub lfs: Option<Lfs>,
}

/// An LFS file's pointer: its sha256 (`oid`) and size.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Lfs {
    pub oid: String,
    pub size: u64,
}

impl TreeEntry {
    /// Its sha256 when the Hub stores it in LFS (weights always are).
    pub fn sha256(&self) -> Option<String> {
        self.lfs
            .as_ref()
            .and_then(|l| super::hub::sha256_of_etag(&l.oid))
    }
}

/// The listing's URL: every file of the main revision, folders walked.
pub fn tree_url(endpoint: &str, repo: &str) -> String {
    format!(
        "{}/api/models/{repo}/tree/main?recursive=true",
        endpoint.trim_end_matches('/')
    )
}

/// Reads a repo's listing, page by page (the Hub pages long listings with a `Link` header).
pub async fn list(
    endpoint: &str,
    repo: &str,
    token: Option<&str>,
) -> Result<Vec<TreeEntry>, TransferError> {
    let first = tree_url(endpoint, repo);
    let unreachable = |url: &str, e: reqwest::Error| TransferError::Unreachable {
        url: url.to_string(),
        error: e.to_string(),
    };
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| unreachable(&first, e))?;
    let mut entries = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut next = Some(first);
    while let Some(url) = next.take() {
        // Pages come from the Hub itself, each once: a link elsewhere or back is not followed.
        if !super::hub::on_hub(&url, endpoint) || !seen.insert(url.clone()) {
            break;
        }
        let mut request = client.get(&url);
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = request.send().await.map_err(|e| unreachable(&url, e))?;
        if !response.status().is_success() {
            return Err(refusal(&url, response.status()));
        }
        next = response
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_page);
        let body = response.bytes().await.map_err(|e| unreachable(&url, e))?;
        let page: Vec<TreeEntry> = serde_json::from_slice(&body).map_err(|e| {
            TransferError::Refused(format!(
                "{url} is not a file listing the Hub would give: {e}"
            ))
        })?;
        if page.is_empty() {
            break;
        }
        entries.extend(page);
        if entries.len() > MAX_ENTRIES {
            return Err(TransferError::Refused(format!(
                "{repo} lists more than {MAX_ENTRIES} files: not a model repo"
            )));
        }
    }
    Ok(entries)
}

/// The next page's URL in a `Link` header (`<url>; rel="next"`).
fn next_page(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

/// What a repo holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// An MLX model: the files to fetch, in the listing's order.
    Mlx(Vec<(HubFile, TreeEntry)>),
    /// GGUF files, one of which must be named.
    Gguf(Vec<TreeEntry>),
    Neither,
}

/// The files of an MLX repo a model needs.
fn is_model_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    [
        ".json",
        ".safetensors",
        ".txt",
        ".jsonl",
        ".jinja",
        ".tiktoken",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
        || name == "tokenizer.model"
        || name == "tiktoken.model"
}

/// Sorts a repo's listing into what it holds.
pub fn contents(repo: &str, entries: &[TreeEntry]) -> Result<Contents, HubError> {
    check_repo(repo)?;
    let files = entries.iter().filter(|e| e.kind == "file");
    let has = |name: &str| files.clone().any(|e| e.path == name);
    let weights = files
        .clone()
        .any(|e| !e.path.contains('/') && e.path.ends_with(".safetensors"));
    if has("config.json") && weights {
        let wanted = files
            .filter(|e| is_model_file(&e.path))
            .filter_map(|e| {
                HubFile::in_repo(repo, &e.path)
                    .ok()
                    .map(|file| (file, e.clone()))
            })
            .collect();
        return Ok(Contents::Mlx(wanted));
    }
    let ggufs: Vec<TreeEntry> = files
        .filter(|e| e.path.ends_with(".gguf"))
        .cloned()
        .collect();
    Ok(if ggufs.is_empty() {
        Contents::Neither
    } else {
        Contents::Gguf(ggufs)
    })
}

/// The entries' paths.
pub fn paths(entries: &[TreeEntry]) -> Vec<String> {
    entries.iter().map(|e| e.path.clone()).collect()
}

/// The GGUF file an Ollama-style tag names among `files`: the one whose name ends with the tag
/// (`Q4_K_M` → `…-Q4_K_M.gguf` or `….Q4_K_M.gguf`, in any case); with no tag (or `latest`),
/// Q4_K_M, as Ollama chooses, else the first. Split files (`-00001-of-00003`) are not chosen.
pub fn choose_gguf<'a>(files: &'a [String], tag: Option<&str>) -> Option<&'a str> {
    let whole = files.iter().filter(|f| !is_split(f)).map(String::as_str);
    let ends_with = |file: &str, tag: &str| {
        let stem = file
            .rsplit('/')
            .next()
            .unwrap_or(file)
            .trim_end_matches(".gguf");
        let (stem, tag) = (stem.to_ascii_lowercase(), tag.to_ascii_lowercase());
        stem.strip_suffix(&tag)
            .is_some_and(|before| before.ends_with(['-', '.']))
    };
    match tag.filter(|t| *t != "latest") {
        Some(tag) => whole.clone().find(|f| ends_with(f, tag)),
        None => whole
            .clone()
            .find(|f| ends_with(f, "Q4_K_M"))
            .or_else(|| whole.clone().next()),
    }
}

/// Whether `file` is one part of a split GGUF.
fn is_split(file: &str) -> bool {
    let stem = file.trim_end_matches(".gguf");
    stem.rsplit_once("-of-").is_some_and(|(before, total)| {
        let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
        digits(total)
            && before
                .rsplit_once('-')
                .is_some_and(|(_, part)| digits(part))
    })
}

/// The folder an MLX repo is pulled into, and so its model id: the repo's name
/// (`mlx-community/Qwen3-0.6B-4bit` → `Qwen3-0.6B-4bit`).
pub fn folder_name(repo: &str) -> &str {
    repo.rsplit('/').next().unwrap_or(repo)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the Hub's answer for an mlx-community repo, trimmed.
    const LISTING: &str = r#"[
      {"type":"file","oid":"a1b2","size":1519,"path":".gitattributes"},
      {"type":"file","oid":"c3d4","size":2187,"path":"README.md"},
      {"type":"file","oid":"e5f6","size":738,"path":"config.json"},
      {"type":"file","oid":"0f1e","size":98421374,"path":"model.safetensors",
       "lfs":{"oid":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","size":98421374,"pointerSize":135}},
      {"type":"file","oid":"2d3c","size":3522656,"path":"tokenizer.json",
       "lfs":{"oid":"60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752","size":3522656,"pointerSize":134}},
      {"type":"file","oid":"4b5a","size":3764,"path":"tokenizer_config.json"},
      {"type":"file","oid":"6978","size":120,"path":"modeling_custom.py"},
      {"type":"directory","oid":"8a9b","size":0,"path":"images"},
      {"type":"file","oid":"bcde","size":40960,"path":"images/diagram.png"}
    ]"#;

    #[test]
    fn an_mlx_repo_is_its_model_files() {
        let entries: Vec<TreeEntry> = serde_json::from_str(LISTING).expect("listing");
        let Ok(Contents::Mlx(files)) = contents("mlx-community/SmolLM2-135M-Instruct", &entries)
        else {
            panic!("an MLX repo");
        };
        let names: Vec<&str> = files.iter().map(|(f, _)| f.file.as_str()).collect();
        assert_eq!(
            names,
            [
                "config.json",
                "model.safetensors",
                "tokenizer.json",
                "tokenizer_config.json"
            ]
        );
        assert_eq!(
            files[1].1.sha256().as_deref(),
            Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
        );
        assert_eq!(files[0].1.sha256(), None, "a small file has only a git id");
        assert_eq!(
            folder_name("mlx-community/SmolLM2-135M-Instruct"),
            "SmolLM2-135M-Instruct"
        );
    }

    #[test]
    fn a_gguf_repo_lists_its_files_and_others_are_neither() {
        let entries: Vec<TreeEntry> = serde_json::from_str(
            r#"[{"type":"file","path":"README.md","size":5},
                {"type":"file","path":"m-Q4_K_M.gguf","size":9},
                {"type":"file","path":"Q8_0/m-Q8_0.gguf","size":9}]"#,
        )
        .expect("listing");
        let Ok(Contents::Gguf(ggufs)) = contents("org/m-GGUF", &entries) else {
            panic!("a GGUF repo");
        };
        assert_eq!(paths(&ggufs), ["m-Q4_K_M.gguf", "Q8_0/m-Q8_0.gguf"]);
        assert_eq!(contents("org/m", &entries[..1]), Ok(Contents::Neither));
        assert_eq!(
            contents("../m", &entries),
            Err(HubError::Repo("../m".into()))
        );
    }

    #[test]
    fn a_tag_names_a_gguf_as_ollama_reads_it() {
        let files: Vec<String> = [
            "SmolLM2-135M-Instruct-Q8_0.gguf",
            "SmolLM2-135M-Instruct-Q4_K_M.gguf",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "big-Q2_K-00001-of-00003.gguf",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            choose_gguf(&files, Some("q4_1")),
            Some("SmolLM2-135M-Instruct.Q4_1.gguf")
        );
        assert_eq!(
            choose_gguf(&files, Some("Q8_0")),
            Some("SmolLM2-135M-Instruct-Q8_0.gguf")
        );
        assert_eq!(
            choose_gguf(&files, None),
            Some("SmolLM2-135M-Instruct-Q4_K_M.gguf")
        );
        assert_eq!(
            choose_gguf(&files, Some("latest")),
            Some("SmolLM2-135M-Instruct-Q4_K_M.gguf")
        );
        assert_eq!(choose_gguf(&files, Some("K_M")), None, "a whole tag only");
        assert_eq!(
            choose_gguf(&files, Some("Q2_K")),
            None,
            "split files are not pulled"
        );
        assert!(
            !is_split("a€12345-of-00003.gguf"),
            "no part number, and no panic"
        );
        assert_eq!(
            choose_gguf(&files[..1], None),
            Some("SmolLM2-135M-Instruct-Q8_0.gguf")
        );
    }

    #[test]
    fn the_next_page_is_read_from_the_link_header() {
        assert_eq!(
            next_page(r#"<https://hf.co/api/models/o/r/tree/main?cursor=abc>; rel="next""#)
                .as_deref(),
            Some("https://hf.co/api/models/o/r/tree/main?cursor=abc")
        );
        assert_eq!(next_page(r#"<https://x/1>; rel="prev""#), None);
    }

    #[test]
    fn paths_that_would_leave_the_folder_are_not_fetched() {
        let entries: Vec<TreeEntry> = serde_json::from_str(
            r#"[{"type":"file","path":"config.json","size":5},
                {"type":"file","path":"model.safetensors","size":9},
                {"type":"file","path":"../escape.json","size":9},
                {"type":"file","path":"a//b.json","size":9}]"#,
        )
        .expect("listing");
        let Ok(Contents::Mlx(files)) = contents("org/m", &entries) else {
            panic!("an MLX repo");
        };
        assert_eq!(files.len(), 2);
    }
}
