//! A small, safe reader for the header of a GGUF model file.
//!
//! The pool estimates how much memory a model needs *before* loading it, so that it can refuse
//! the load or evict another model first instead of running out of memory half-way through.
//! Everything that estimate needs (the architecture, the layer count, the attention shape, the
//! vocabulary size, the size of the tensor data) is in the GGUF header, so this module reads the
//! header alone, in pure Rust, through a buffered reader: it never reads the tensor data and never
//! reads the whole file. It deliberately does not go through llama.cpp, which aborts the whole
//! process on some malformed files.
//!
//! The model folders can hold any file named `*.gguf`: truncated downloads, corrupt copies,
//! deliberately hostile files. So every count and length in the header is checked against a limit
//! and against the bytes left in the file *before* anything is allocated, stored or skipped, all
//! size arithmetic is checked, and a bad file gives a [`GgufError`], never a panic, a huge
//! allocation or an endless loop. Only the handful of values the estimate needs are kept; every
//! other value (tokenizer vocabularies and merge lists, chat templates, ...) is read and thrown
//! away element by element.
//!
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>. Only little-endian GGUF
//! versions 2 and 3 are read (version 1 used 32-bit counts and is long obsolete; llama.cpp dropped
//! it too).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// Most tensors a file may declare (real models have a few thousand at most).
const MAX_TENSORS: u64 = 1_000_000;
/// Most metadata key/value pairs a file may declare (real models have a few dozen).
const MAX_KVS: u64 = 100_000;
/// Longest string value (chat templates are the longest real ones, a few tens of KiB).
const MAX_VALUE_STRING: u64 = 16 << 20;
/// Longest metadata key, tensor name or architecture name.
const MAX_NAME: u64 = 64 << 10;
/// Longest array value. Arrays are read and discarded element by element (bar the per-layer
/// arrays below), so this bounds work, not memory; every array is also checked against the bytes
/// left in the file before its first element is read. The largest real arrays are tokenizer
/// vocabularies and merge lists of a few hundred thousand entries.
const MAX_ARRAY_LEN: u64 = 1 << 26;
/// Arrays may hold arrays, but those may not hold arrays again.
const MAX_ARRAY_DEPTH: u32 = 2;
/// Most dimensions of a tensor (ggml itself uses 4).
const MAX_DIMS: u32 = 8;
/// Longest per-layer integer array that is kept (`head_count_kv` and the like): one per layer.
const MAX_PER_LAYER: u64 = 4096;
/// Most distinct `*.block_count`-like keys that are kept while looking for the `{arch}.` ones.
/// A real file has about ten. Together with [`MAX_PER_LAYER`] this keeps the kept metadata
/// within a few MiB whatever the file says.
const MAX_SHAPE_KEYS: usize = 256;
/// The alignment of the tensor data when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;

/// How the key of a kept per-layer or scalar integer ends; the full key is `{arch}.{suffix}`.
const SHAPE_SUFFIXES: [&str; 10] = [
    "block_count",
    "context_length",
    "embedding_length",
    "feed_forward_length",
    "vocab_size",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "attention.sliding_window",
];

// GGUF metadata value types.
const TYPE_U8: u32 = 0;
const TYPE_I8: u32 = 1;
const TYPE_U16: u32 = 2;
const TYPE_I16: u32 = 3;
const TYPE_U32: u32 = 4;
const TYPE_I32: u32 = 5;
const TYPE_F32: u32 = 6;
const TYPE_BOOL: u32 = 7;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;
const TYPE_U64: u32 = 10;
const TYPE_I64: u32 = 11;
const TYPE_F64: u32 = 12;

/// What the memory estimate needs from a GGUF header.
///
/// The `{arch}.*` integers may be stored in the file with any integer type; a value that is
/// negative or above `u32::MAX` is treated as absent (`None`), as is one stored with a
/// non-integer type. Where the file holds a per-layer array instead of a single value, the
/// largest element is taken, except for `head_count_kv`, which keeps every layer's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufSummary {
    /// `general.architecture`, e.g. "llama".
    pub architecture: String,
    /// `general.name`.
    pub name: Option<String>,
    /// The size of the whole file.
    pub file_bytes: u64,
    /// Where the tensor data starts: the end of the tensor infos rounded up to the alignment.
    pub tensor_data_offset: u64,
    /// `file_bytes - tensor_data_offset`: roughly what loading the weights costs.
    pub tensor_data_bytes: u64,
    pub tensor_count: u64,
    /// `{arch}.block_count`: the number of layers.
    pub block_count: Option<u32>,
    /// `{arch}.context_length`: the context the model was trained with.
    pub context_length: Option<u32>,
    /// `{arch}.embedding_length`.
    pub embedding_length: Option<u32>,
    /// `{arch}.feed_forward_length` (the largest layer's, if it is per layer).
    pub feed_forward_length: Option<u32>,
    /// `{arch}.attention.head_count` (the largest layer's, if it is per layer).
    pub head_count: Option<u32>,
    /// `{arch}.attention.head_count_kv`: one value for every layer, or a single value for all.
    pub head_count_kv: Option<Vec<u32>>,
    /// `{arch}.attention.key_length`.
    pub key_length: Option<u32>,
    /// `{arch}.attention.value_length`.
    pub value_length: Option<u32>,
    /// `{arch}.attention.sliding_window`.
    pub sliding_window: Option<u32>,
    /// The number of entries of `tokenizer.ggml.tokens`, else `{arch}.vocab_size`.
    pub vocab_size: Option<u32>,
    /// Whether the file has a `tokenizer.chat_template` string.
    pub has_chat_template: bool,
}

/// Why a GGUF header could not be read. The messages are meant to be shown to a user.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file (the first bytes are not 'GGUF')")]
    NotGguf,
    #[error("unsupported GGUF version {0} (only versions 2 and 3 can be read)")]
    UnsupportedVersion(u32),
    #[error("the GGUF file is cut short (an incomplete download?): it ends inside {what}")]
    Truncated { what: String },
    #[error("the GGUF file is corrupt: {what} is {value}, more than the limit of {limit}")]
    TooLarge {
        what: String,
        value: u64,
        limit: u64,
    },
    #[error("the GGUF file is corrupt: {what}")]
    Invalid { what: String },
    #[error("could not read the GGUF file: {0}")]
    Io(#[from] io::Error),
}

/// Elements and bytes per block of a ggml tensor type, or `None` for a type the caller does not
/// know (its tensors' sizes are then not checked). The llama.cpp engine answers from the ggml it
/// links, so the table is never out of step with the files llama.cpp reads.
pub type BlockLayout = fn(u32) -> Option<(u64, u64)>;

/// Reads the summary of the GGUF file at `path`, through a buffered reader: only the header is
/// read, never the tensor data.
pub fn read_summary(path: &Path, layout: BlockLayout) -> Result<GgufSummary, GgufError> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    parse_summary(BufReader::with_capacity(64 << 10, file), file_len, layout)
}

/// Reads the summary from the start of a GGUF file of `file_len` bytes. `file_len` is trusted
/// over `reader`: nothing past it is read, and the data section must fit in it.
pub fn parse_summary<R: Read>(
    reader: R,
    file_len: u64,
    layout: BlockLayout,
) -> Result<GgufSummary, GgufError> {
    let mut input = Input {
        inner: reader,
        pos: 0,
        len: file_len,
        what: "the file header".to_owned(),
    };
    input.magic()?;

    let version = input.u32()?;
    match version {
        2 | 3 => {}
        v if matches!(v.swap_bytes(), 2 | 3) => {
            return Err(invalid(
                "it is a big-endian GGUF file, which is not supported".to_owned(),
            ))
        }
        v => return Err(GgufError::UnsupportedVersion(v)),
    }
    let tensor_count = input.u64()?;
    if tensor_count > MAX_TENSORS {
        return Err(too_large("the tensor count", tensor_count, MAX_TENSORS));
    }
    let kv_count = input.u64()?;
    if kv_count > MAX_KVS {
        return Err(too_large("the metadata entry count", kv_count, MAX_KVS));
    }

    let meta = read_metadata(&mut input, kv_count)?;
    let alignment = meta.alignment.unwrap_or(DEFAULT_ALIGNMENT);
    let furthest = read_tensor_infos(&mut input, tensor_count, alignment, layout)?;

    // Like llama.cpp, pad to the alignment only when there are tensors.
    let infos_end = input.pos;
    let data_start = if tensor_count == 0 {
        infos_end
    } else {
        infos_end
            .checked_next_multiple_of(alignment)
            .ok_or_else(|| invalid("the tensor data starts past 2^64 bytes".to_owned()))?
    };
    let tensor_data_bytes =
        file_len
            .checked_sub(data_start)
            .ok_or_else(|| GgufError::Truncated {
                what: format!(
                    "the padding before the tensor data, which should start at byte {data_start} \
                     of this {file_len}-byte file"
                ),
            })?;
    if let Some(Furthest { end, name }) = furthest {
        if end > tensor_data_bytes {
            return Err(GgufError::Truncated {
                what: format!(
                    "the data of tensor '{name}', which needs {end} bytes of tensor data where \
                     the file holds {tensor_data_bytes}"
                ),
            });
        }
    }

    let architecture = meta
        .architecture
        .filter(|a| !a.is_empty())
        .ok_or_else(|| invalid("it has no 'general.architecture' string".to_owned()))?;
    let shape = |suffix: &str| meta.shape.get(&format!("{architecture}.{suffix}"));
    let scalar = |suffix: &str| shape(suffix).and_then(|values| values.iter().copied().max());
    Ok(GgufSummary {
        name: meta.name,
        file_bytes: file_len,
        tensor_data_offset: data_start,
        tensor_data_bytes,
        tensor_count,
        block_count: scalar("block_count"),
        context_length: scalar("context_length"),
        embedding_length: scalar("embedding_length"),
        feed_forward_length: scalar("feed_forward_length"),
        head_count: scalar("attention.head_count"),
        head_count_kv: shape("attention.head_count_kv")
            .filter(|values| !values.is_empty())
            .cloned(),
        key_length: scalar("attention.key_length"),
        value_length: scalar("attention.value_length"),
        sliding_window: scalar("attention.sliding_window"),
        vocab_size: meta
            .token_count
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0)
            .or_else(|| scalar("vocab_size")),
        has_chat_template: meta.has_chat_template,
        architecture,
    })
}

fn invalid(what: String) -> GgufError {
    GgufError::Invalid { what }
}

fn too_large(what: impl Into<String>, value: u64, limit: u64) -> GgufError {
    GgufError::TooLarge {
        what: what.into(),
        value,
        limit,
    }
}

/// A name from the file, made printable and short enough for an error message.
fn shorten(name: &[u8]) -> String {
    const MAX_CHARS: usize = 80;
    let name = String::from_utf8_lossy(name);
    if name.chars().count() <= MAX_CHARS {
        name.into_owned()
    } else {
        let mut short: String = name.chars().take(MAX_CHARS).collect();
        short.push('…');
        short
    }
}

fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        TYPE_U8 | TYPE_I8 | TYPE_BOOL => Some(1),
        TYPE_U16 | TYPE_I16 => Some(2),
        TYPE_U32 | TYPE_I32 | TYPE_F32 => Some(4),
        TYPE_U64 | TYPE_I64 | TYPE_F64 => Some(8),
        _ => None,
    }
}

fn is_int(ty: u32) -> bool {
    matches!(
        ty,
        TYPE_U8 | TYPE_I8 | TYPE_U16 | TYPE_I16 | TYPE_U32 | TYPE_I32 | TYPE_U64 | TYPE_I64
    )
}

/// The metadata kept while reading the key/value pairs.
#[derive(Default)]
struct Metadata {
    architecture: Option<String>,
    name: Option<String>,
    alignment: Option<u64>,
    has_chat_template: bool,
    token_count: Option<u64>,
    /// Integer values whose key ends like one of [`SHAPE_SUFFIXES`], by full key (the
    /// architecture may come later in the file): a scalar as one value, an array as one per
    /// layer. A key whose value is out of range or not an integer is absent.
    shape: HashMap<String, Vec<u32>>,
}

enum Wanted {
    Architecture,
    Name,
    Alignment,
    ChatTemplate,
    Tokens,
    Shape,
    Nothing,
}

fn wanted(key: &[u8]) -> Wanted {
    match key {
        b"general.architecture" => Wanted::Architecture,
        b"general.name" => Wanted::Name,
        b"general.alignment" => Wanted::Alignment,
        b"tokenizer.chat_template" => Wanted::ChatTemplate,
        b"tokenizer.ggml.tokens" => Wanted::Tokens,
        _ if is_shape_key(key) => Wanted::Shape,
        _ => Wanted::Nothing,
    }
}

/// Whether `key` is `{something}.{suffix}` for one of [`SHAPE_SUFFIXES`] (and short).
fn is_shape_key(key: &[u8]) -> bool {
    key.len() <= 256
        && SHAPE_SUFFIXES.iter().any(|suffix| {
            key.strip_suffix(suffix.as_bytes())
                .and_then(|prefix| prefix.strip_suffix(b"."))
                .is_some_and(|arch| !arch.is_empty())
        })
}

fn read_metadata<R: Read>(input: &mut Input<R>, count: u64) -> Result<Metadata, GgufError> {
    let mut meta = Metadata::default();
    let mut key = Vec::new();
    for i in 1..=count {
        input.what = format!("the key of metadata entry {i} of {count}");
        input.string_into(MAX_NAME, &mut key)?;
        input.what = format!("the value of metadata key '{}'", shorten(&key));
        let ty = input.value_type()?;
        match (wanted(&key), ty) {
            (Wanted::Architecture, TYPE_STRING) => {
                meta.architecture = Some(input.string(MAX_NAME)?);
            }
            (Wanted::Name, TYPE_STRING) => meta.name = Some(input.string(MAX_VALUE_STRING)?),
            (Wanted::Alignment, TYPE_U32) => {
                let alignment = input.u32()?;
                if !alignment.is_power_of_two() {
                    return Err(invalid(format!(
                        "its alignment (general.alignment) is {alignment}, not a power of two"
                    )));
                }
                meta.alignment = Some(u64::from(alignment));
            }
            (Wanted::Alignment, _) => {
                return Err(invalid(format!(
                    "its alignment (general.alignment) has value type {ty}, not u32 (4)"
                )));
            }
            (Wanted::ChatTemplate, TYPE_STRING) => {
                meta.has_chat_template = true;
                input.skip_value(ty, 0)?;
            }
            (Wanted::Tokens, TYPE_ARRAY) => {
                let (element_type, len) = input.array_header(1)?;
                input.skip_elements(element_type, len, 1)?;
                meta.token_count = Some(len);
            }
            (Wanted::Shape, _) => {
                let values = input.integers(ty)?;
                let key = String::from_utf8_lossy(&key).into_owned();
                match values {
                    Some(values) => {
                        if !meta.shape.contains_key(&key) && meta.shape.len() >= MAX_SHAPE_KEYS {
                            return Err(too_large(
                                "the number of model-shape metadata keys",
                                u64::try_from(meta.shape.len()).unwrap_or(u64::MAX),
                                u64::try_from(MAX_SHAPE_KEYS).unwrap_or(u64::MAX),
                            ));
                        }
                        meta.shape.insert(key, values);
                    }
                    None => {
                        meta.shape.remove(&key);
                    }
                }
            }
            _ => input.skip_value(ty, 0)?,
        }
    }
    Ok(meta)
}

/// The tensor whose data reaches furthest into the data section.
struct Furthest {
    /// Bytes of tensor data it needs: its offset plus its size.
    end: u64,
    name: String,
}

fn read_tensor_infos<R: Read>(
    input: &mut Input<R>,
    count: u64,
    alignment: u64,
    block_layout: BlockLayout,
) -> Result<Option<Furthest>, GgufError> {
    let mut furthest: Option<Furthest> = None;
    let mut name = Vec::new();
    for i in 1..=count {
        input.what = format!("the info of tensor {i} of {count}");
        input.string_into(MAX_NAME, &mut name)?;
        let shown = shorten(&name);
        input.what = format!("the info of tensor '{shown}'");

        let n_dims = input.u32()?;
        if n_dims > MAX_DIMS {
            return Err(too_large(
                format!("the number of dimensions of tensor '{shown}'"),
                u64::from(n_dims),
                u64::from(MAX_DIMS),
            ));
        }
        let mut elements: u64 = 1;
        let mut row: u64 = 1;
        for d in 0..n_dims {
            let dim = input.u64()?;
            if d == 0 {
                row = dim;
            }
            elements = elements
                .checked_mul(dim)
                .filter(|&e| e <= i64::MAX as u64 && dim <= i64::MAX as u64)
                .ok_or_else(|| {
                    invalid(format!(
                        "tensor '{shown}' has more elements than fit in 63 bits"
                    ))
                })?;
        }
        let ggml_type = input.u32()?;
        let offset = input.u64()?;
        if offset % alignment != 0 {
            return Err(invalid(format!(
                "tensor '{shown}' starts at offset {offset}, which is not a multiple of the \
                 alignment {alignment}"
            )));
        }

        let size = match block_layout(ggml_type) {
            Some((block_elements, block_bytes)) => {
                if row % block_elements != 0 {
                    return Err(invalid(format!(
                        "tensor '{shown}' of ggml type {ggml_type} has rows of {row} elements, \
                         not a multiple of the type's block of {block_elements}"
                    )));
                }
                (elements / block_elements).checked_mul(block_bytes)
            }
            // A type this reader does not know: its size is unknown, but it takes at least a byte.
            None => Some(u64::from(elements > 0)),
        };
        let end = size
            .and_then(|size| offset.checked_add(size))
            .ok_or_else(|| invalid(format!("tensor '{shown}' ends past 2^64 bytes")))?;
        if furthest.as_ref().is_none_or(|f| end > f.end) {
            furthest = Some(Furthest { end, name: shown });
        }
    }
    Ok(furthest)
}

/// The file being read: counts the bytes read, never reads past `len`, and knows what it is
/// reading for error messages.
struct Input<R> {
    inner: R,
    pos: u64,
    len: u64,
    /// What is being read, for error messages ("the value of metadata key 'x'").
    what: String,
}

impl<R: Read> Input<R> {
    fn truncated(&self) -> GgufError {
        GgufError::Truncated {
            what: self.what.clone(),
        }
    }

    /// Fails unless `n` more bytes fit in the file.
    fn need(&self, n: u64) -> Result<(), GgufError> {
        if n > self.len.saturating_sub(self.pos) {
            Err(self.truncated())
        } else {
            Ok(())
        }
    }

    /// Reads the magic; a file too short to hold one is not a GGUF file either.
    fn magic(&mut self) -> Result<(), GgufError> {
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < magic.len() {
            let Some(rest) = magic.get_mut(got..) else {
                break;
            };
            match self.inner.read(rest) {
                Ok(0) => break,
                Ok(n) => got = got.saturating_add(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.pos = 4;
        if got < 4 || self.len < 4 || magic != *b"GGUF" {
            return Err(GgufError::NotGguf);
        }
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), GgufError> {
        let n = buf.len() as u64;
        self.need(n)?;
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.pos = self.pos.saturating_add(n);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.truncated()),
            Err(e) => Err(e.into()),
        }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut buf = [0u8; N];
        self.fill(&mut buf)?;
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    /// Reads an integer of any of the integer value types.
    fn int(&mut self, ty: u32) -> Result<i128, GgufError> {
        Ok(match ty {
            TYPE_U8 => i128::from(u8::from_le_bytes(self.bytes()?)),
            TYPE_I8 => i128::from(i8::from_le_bytes(self.bytes()?)),
            TYPE_U16 => i128::from(u16::from_le_bytes(self.bytes()?)),
            TYPE_I16 => i128::from(i16::from_le_bytes(self.bytes()?)),
            TYPE_U32 => i128::from(u32::from_le_bytes(self.bytes()?)),
            TYPE_I32 => i128::from(i32::from_le_bytes(self.bytes()?)),
            TYPE_U64 => i128::from(u64::from_le_bytes(self.bytes()?)),
            TYPE_I64 => i128::from(i64::from_le_bytes(self.bytes()?)),
            _ => return Err(invalid(format!("{} is not an integer", self.what))),
        })
    }

    /// Skips `n` bytes, reading and discarding them.
    fn skip(&mut self, n: u64) -> Result<(), GgufError> {
        self.need(n)?;
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        self.pos = self.pos.saturating_add(copied);
        if copied < n {
            return Err(self.truncated());
        }
        Ok(())
    }

    /// Reads a value type, failing on an unknown one.
    fn value_type(&mut self) -> Result<u32, GgufError> {
        let ty = self.u32()?;
        if ty > TYPE_F64 {
            return Err(invalid(format!(
                "{} has unknown value type {ty}",
                self.what
            )));
        }
        Ok(ty)
    }

    /// Reads a string's length and checks it against `limit` and the bytes left.
    fn string_len(&mut self, limit: u64) -> Result<u64, GgufError> {
        let len = self.u64()?;
        if len > limit {
            return Err(too_large(
                format!("the length of a string in {}", self.what),
                len,
                limit,
            ));
        }
        self.need(len)?;
        Ok(len)
    }

    fn string_into(&mut self, limit: u64, buf: &mut Vec<u8>) -> Result<(), GgufError> {
        let len = self.string_len(limit)?;
        let len = usize::try_from(len).map_err(|_| self.truncated())?;
        buf.clear();
        buf.resize(len, 0);
        self.fill(buf)
    }

    /// Reads a string; bytes that are not UTF-8 become U+FFFD.
    fn string(&mut self, limit: u64) -> Result<String, GgufError> {
        let mut buf = Vec::new();
        self.string_into(limit, &mut buf)?;
        Ok(String::from_utf8(buf)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// Reads an array's element type and length, after its value type. `depth` is its nesting
    /// level: 1 for a metadata value, 2 for an array inside one.
    fn array_header(&mut self, depth: u32) -> Result<(u32, u64), GgufError> {
        let element_type = self.value_type()?;
        if element_type == TYPE_ARRAY && depth >= MAX_ARRAY_DEPTH {
            return Err(too_large(
                format!("the nesting depth of the arrays in {}", self.what),
                u64::from(depth.saturating_add(1)),
                u64::from(MAX_ARRAY_DEPTH),
            ));
        }
        let len = self.u64()?;
        if len > MAX_ARRAY_LEN {
            return Err(too_large(
                format!("the length of an array in {}", self.what),
                len,
                MAX_ARRAY_LEN,
            ));
        }
        // Every element takes at least this much, so a length the file cannot hold is caught
        // before reading any element.
        let min_element =
            fixed_size(element_type).unwrap_or(if element_type == TYPE_STRING { 8 } else { 12 });
        self.need(len.saturating_mul(min_element))?;
        Ok((element_type, len))
    }

    /// Skips the `len` elements of an array at nesting level `depth`.
    fn skip_elements(&mut self, element_type: u32, len: u64, depth: u32) -> Result<(), GgufError> {
        match fixed_size(element_type) {
            Some(size) => {
                let bytes = len.checked_mul(size).ok_or_else(|| self.truncated())?;
                self.skip(bytes)
            }
            None => {
                for _ in 0..len {
                    self.skip_value(element_type, depth)?;
                }
                Ok(())
            }
        }
    }

    /// Skips a value of type `ty` at nesting level `depth` (0 for a metadata value).
    fn skip_value(&mut self, ty: u32, depth: u32) -> Result<(), GgufError> {
        match ty {
            TYPE_STRING => {
                let len = self.string_len(MAX_VALUE_STRING)?;
                self.skip(len)
            }
            TYPE_ARRAY => {
                let depth = depth.saturating_add(1);
                let (element_type, len) = self.array_header(depth)?;
                self.skip_elements(element_type, len, depth)
            }
            _ => match fixed_size(ty) {
                Some(size) => self.skip(size),
                None => Err(invalid(format!(
                    "{} has unknown value type {ty}",
                    self.what
                ))),
            },
        }
    }

    /// Reads an integer or an array of integers as `u32`s; `None` (with the value skipped) if it
    /// is another type or a value is out of range.
    fn integers(&mut self, ty: u32) -> Result<Option<Vec<u32>>, GgufError> {
        if is_int(ty) {
            return Ok(u32::try_from(self.int(ty)?).ok().map(|v| vec![v]));
        }
        if ty != TYPE_ARRAY {
            self.skip_value(ty, 0)?;
            return Ok(None);
        }
        let (element_type, len) = self.array_header(1)?;
        if !is_int(element_type) {
            self.skip_elements(element_type, len, 1)?;
            return Ok(None);
        }
        if len > MAX_PER_LAYER {
            return Err(too_large(
                format!("the number of per-layer values in {}", self.what),
                len,
                MAX_PER_LAYER,
            ));
        }
        let mut values = Vec::new();
        let mut in_range = true;
        for _ in 0..len {
            match u32::try_from(self.int(element_type)?) {
                Ok(v) => values.push(v),
                Err(_) => in_range = false,
            }
        }
        Ok(in_range.then_some(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Little-endian GGUF encoding onto a byte buffer.
    trait Put {
        fn put(&mut self, bytes: &[u8]) -> &mut Self;
        fn u32(&mut self, v: u32) -> &mut Self {
            self.put(&v.to_le_bytes())
        }
        fn u64(&mut self, v: u64) -> &mut Self {
            self.put(&v.to_le_bytes())
        }
        fn i32(&mut self, v: i32) -> &mut Self {
            self.put(&v.to_le_bytes())
        }
        fn str(&mut self, s: &str) -> &mut Self {
            self.u64(s.len() as u64).put(s.as_bytes())
        }
    }

    impl Put for Vec<u8> {
        fn put(&mut self, bytes: &[u8]) -> &mut Self {
            self.extend_from_slice(bytes);
            self
        }
    }

    /// Builds a GGUF file: key/values and tensor infos are added, the counts follow.
    struct Builder {
        version: u32,
        kvs: Vec<u8>,
        n_kvs: u64,
        infos: Vec<u8>,
        n_tensors: u64,
    }

    impl Builder {
        fn new() -> Self {
            Builder {
                version: 3,
                kvs: Vec::new(),
                n_kvs: 0,
                infos: Vec::new(),
                n_tensors: 0,
            }
        }

        /// Adds a key and value type; the value is written onto the returned buffer.
        fn kv(&mut self, key: &str, ty: u32) -> &mut Vec<u8> {
            self.n_kvs += 1;
            self.kvs.str(key).u32(ty)
        }

        fn tensor(&mut self, name: &str, dims: &[u64], ggml_type: u32, offset: u64) -> &mut Self {
            self.n_tensors += 1;
            self.infos.str(name).u32(dims.len() as u32);
            for &d in dims {
                self.infos.u64(d);
            }
            self.infos.u32(ggml_type).u64(offset);
            self
        }

        /// The header up to the end of the tensor infos, without padding.
        fn header(&self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.u32(self.version)
                .u64(self.n_tensors)
                .u64(self.n_kvs)
                .put(&self.kvs)
                .put(&self.infos);
            out
        }

        /// The header, padding to `alignment` and `data` bytes of tensor data.
        fn file(&self, alignment: usize, data: usize) -> Vec<u8> {
            let mut out = self.header();
            out.resize(out.len().next_multiple_of(alignment) + data, 0);
            out
        }
    }

    /// A llama-like model with two layers, three tokens and two F32 tensors.
    fn sample() -> Builder {
        let mut b = Builder::new();
        b.kv("general.architecture", TYPE_STRING).str("llama");
        b.kv("general.name", TYPE_STRING).str("Tiny Llama");
        b.kv("general.alignment", TYPE_U32).u32(32);
        b.kv("general.flag", TYPE_BOOL).put(&[1]);
        b.kv("general.score", TYPE_F64).put(&1.5f64.to_le_bytes());
        b.kv("llama.block_count", TYPE_U32).u32(2);
        b.kv("llama.context_length", TYPE_U64).u64(4096);
        b.kv("llama.embedding_length", TYPE_I32).i32(64);
        b.kv("llama.feed_forward_length", TYPE_ARRAY)
            .u32(TYPE_U16)
            .u64(2)
            .put(&128u16.to_le_bytes())
            .put(&256u16.to_le_bytes());
        b.kv("llama.attention.head_count", TYPE_U8).put(&[4]);
        b.kv("llama.attention.head_count_kv", TYPE_ARRAY)
            .u32(TYPE_I32)
            .u64(2)
            .i32(2)
            .i32(1);
        b.kv("llama.attention.key_length", TYPE_I64)
            .put(&16i64.to_le_bytes());
        b.kv("llama.attention.value_length", TYPE_U16)
            .put(&16u16.to_le_bytes());
        b.kv("llama.rope.freq_base", TYPE_F32)
            .put(&10000f32.to_le_bytes());
        b.kv("tokenizer.ggml.tokens", TYPE_ARRAY)
            .u32(TYPE_STRING)
            .u64(3)
            .str("a")
            .str("bb")
            .str("<s>");
        b.kv("tokenizer.ggml.scores", TYPE_ARRAY)
            .u32(TYPE_F32)
            .u64(3)
            .put(&[0; 12]);
        // An array of arrays (depth 2) is allowed and skipped.
        b.kv("tokenizer.ggml.nested", TYPE_ARRAY)
            .u32(TYPE_ARRAY)
            .u64(2)
            .u32(TYPE_U8)
            .u64(1)
            .put(&[7])
            .u32(TYPE_STRING)
            .u64(1)
            .str("x");
        b.kv("tokenizer.chat_template", TYPE_STRING)
            .str("{% for m in messages %}{{ m.content }}{% endfor %}");
        b.tensor("token_embd.weight", &[64, 3], 0, 0); // F32: 768 bytes
        b.tensor("output_norm.weight", &[64], 0, 768); // F32: 256 bytes
        b
    }

    fn sample_summary(header_len: u64) -> GgufSummary {
        let start = header_len.next_multiple_of(32);
        GgufSummary {
            architecture: "llama".into(),
            name: Some("Tiny Llama".into()),
            file_bytes: start + 1024,
            tensor_data_offset: start,
            tensor_data_bytes: 1024,
            tensor_count: 2,
            block_count: Some(2),
            context_length: Some(4096),
            embedding_length: Some(64),
            feed_forward_length: Some(256),
            head_count: Some(4),
            head_count_kv: Some(vec![2, 1]),
            key_length: Some(16),
            value_length: Some(16),
            sliding_window: None,
            vocab_size: Some(3),
            has_chat_template: true,
        }
    }

    fn parse(bytes: &[u8]) -> Result<GgufSummary, GgufError> {
        parse_summary(bytes, bytes.len() as u64, layout)
    }

    /// The layouts of the types these tests write (ggml's); others are unknown.
    fn layout(ggml_type: u32) -> Option<(u64, u64)> {
        match ggml_type {
            0 => Some((1, 4)),
            1 => Some((1, 2)),
            2 => Some((32, 18)),
            3 => Some((32, 20)),
            8 => Some((32, 34)),
            _ => None,
        }
    }

    #[test]
    fn parses_a_well_formed_header() {
        let b = sample();
        let header_len = b.header().len() as u64;
        assert_ne!(header_len % 32, 0, "the sample should need padding");
        let summary = parse(&b.file(32, 1024)).unwrap();
        assert_eq!(summary, sample_summary(header_len));
    }

    #[test]
    fn reads_a_file_from_disk() {
        let b = sample();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        std::fs::write(&path, b.file(32, 1024)).unwrap();
        let summary = read_summary(&path, layout).unwrap();
        assert_eq!(summary, sample_summary(b.header().len() as u64));

        let missing = read_summary(&dir.path().join("missing.gguf"), layout).unwrap_err();
        assert!(matches!(missing, GgufError::Io(_)), "{missing:?}");
    }

    #[test]
    fn rejects_a_bad_magic() {
        let mut bytes = sample().file(32, 1024);
        bytes[3] = b'L';
        let err = parse(&bytes).unwrap_err();
        assert!(matches!(err, GgufError::NotGguf), "{err:?}");
        assert_eq!(
            err.to_string(),
            "not a GGUF file (the first bytes are not 'GGUF')"
        );
        for short in [&b""[..], b"G", b"GGU"] {
            assert!(matches!(parse(short), Err(GgufError::NotGguf)));
        }
    }

    #[test]
    fn rejects_other_versions() {
        for version in [0, 1, 4, 0x0100_0000] {
            let mut b = sample();
            b.version = version;
            let err = parse(&b.file(32, 1024)).unwrap_err();
            assert!(
                matches!(err, GgufError::UnsupportedVersion(v) if v == version),
                "{err:?}"
            );
        }
        let mut b = sample();
        b.version = 3u32.swap_bytes();
        let err = parse(&b.file(32, 1024)).unwrap_err();
        assert!(matches!(err, GgufError::Invalid { .. }), "{err:?}");
        assert!(err.to_string().contains("big-endian"), "{err}");

        let mut b = sample();
        b.version = 2;
        assert!(parse(&b.file(32, 1024)).is_ok());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = sample();
        let full = b.file(32, 1024);
        for len in 0..full.len() {
            let prefix = &full[..len];
            assert!(parse(prefix).is_err(), "a {len}-byte prefix parsed");
        }
        // A reader that ends before the length it was promised.
        let header_len = b.header().len();
        for len in 0..header_len {
            let err = parse_summary(&full[..len], full.len() as u64, layout).unwrap_err();
            assert!(
                matches!(err, GgufError::Truncated { .. } | GgufError::NotGguf),
                "{len}: {err:?}"
            );
        }
        // Cut inside the tensor data: names the tensor.
        let err = parse(&full[..full.len() - 1]).unwrap_err();
        assert!(matches!(err, GgufError::Truncated { .. }), "{err:?}");
        assert!(err.to_string().contains("output_norm.weight"), "{err}");
    }

    #[test]
    fn rejects_absurd_counts() {
        let mut header = b"GGUF".to_vec();
        header.u32(3).u64(u64::MAX).u64(0);
        let err = parse(&header).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::TooLarge {
                    value: u64::MAX,
                    limit: MAX_TENSORS,
                    ..
                }
            ),
            "{err:?}"
        );

        let mut header = b"GGUF".to_vec();
        header.u32(3).u64(0).u64(1 << 40);
        let err = parse(&header).unwrap_err();
        assert!(
            matches!(err, GgufError::TooLarge { limit: MAX_KVS, .. }),
            "{err:?}"
        );

        // Within the limits, but more than the file holds.
        let mut header = b"GGUF".to_vec();
        header.u32(3).u64(MAX_TENSORS).u64(0);
        let err = parse(&header).unwrap_err();
        assert!(matches!(err, GgufError::Truncated { .. }), "{err:?}");
    }

    #[test]
    fn rejects_absurd_strings_and_arrays() {
        // A key longer than any key.
        let mut bytes = b"GGUF".to_vec();
        bytes.u32(3).u64(0).u64(1).u64(1 << 40);
        let err = parse(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::TooLarge {
                    value: 0x100_0000_0000,
                    limit: MAX_NAME,
                    ..
                }
            ),
            "{err:?}"
        );

        // A string value over the limit, and one under it but longer than the file.
        let mut b = sample();
        b.kv("general.description", TYPE_STRING)
            .u64(MAX_VALUE_STRING + 1);
        let err = parse(&b.file(32, 1024)).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::TooLarge {
                    limit: MAX_VALUE_STRING,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("general.description"), "{err}");
        let mut b = sample();
        b.kv("general.description", TYPE_STRING)
            .u64(MAX_VALUE_STRING);
        let err = parse(&b.file(32, 1024)).unwrap_err();
        assert!(matches!(err, GgufError::Truncated { .. }), "{err:?}");

        // Arrays: too long, longer than the file, a string element too long, nested too deep.
        let mut b = sample();
        b.kv("x.big", TYPE_ARRAY).u32(TYPE_U64).u64(u64::MAX);
        let err = parse(&b.file(32, 1024)).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::TooLarge {
                    limit: MAX_ARRAY_LEN,
                    ..
                }
            ),
            "{err:?}"
        );
        let mut b = sample();
        b.kv("x.big", TYPE_ARRAY)
            .u32(TYPE_STRING)
            .u64(MAX_ARRAY_LEN);
        let err = parse(&b.file(32, 1024)).unwrap_err();
        assert!(matches!(err, GgufError::Truncated { .. }), "{err:?}");
        let mut b = sample();
        b.kv("tokenizer.ggml.tokens", TYPE_ARRAY)
            .u32(TYPE_STRING)
            .u64(2)
            .str("ok")
            .u64(u64::MAX);
        let err = parse(&b.file(32, 1024)).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::TooLarge {
                    limit: MAX_VALUE_STRING,
                    ..
                }
            ),
            "{err:?}"
        );
        let mut b = sample();
        b.kv("x.deep", TYPE_ARRAY)
            .u32(TYPE_ARRAY)
            .u64(1)
            .u32(TYPE_ARRAY)
            .u64(0);
        let err = parse(&b.file(32, 1024)).unwrap_err();
        assert!(
            matches!(err, GgufError::TooLarge { limit: 2, .. }),
            "{err:?}"
        );

        // Too many per-layer values to keep.
        let mut b = sample();
        let values = b
            .kv("llama.attention.head_count_kv", TYPE_ARRAY)
            .u32(TYPE_U8)
            .u64(MAX_PER_LAYER + 1);
        values.resize(values.len() + MAX_PER_LAYER as usize + 1, 8);
        let err = parse(&b.file(32, 1024)).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::TooLarge {
                    limit: MAX_PER_LAYER,
                    ..
                }
            ),
            "{err:?}"
        );

        // An unknown value type.
        let mut b = sample();
        b.kv("x.odd", 13).u64(0);
        let err = parse(&b.file(32, 1024)).unwrap_err();
        assert!(matches!(err, GgufError::Invalid { .. }), "{err:?}");
    }

    #[test]
    fn rejects_bad_alignments() {
        for alignment in [0, 48, 3] {
            let mut b = Builder::new();
            b.kv("general.architecture", TYPE_STRING).str("llama");
            b.kv("general.alignment", TYPE_U32).u32(alignment);
            let err = parse(&b.file(32, 0)).unwrap_err();
            assert!(
                matches!(err, GgufError::Invalid { .. }),
                "{alignment}: {err:?}"
            );
            assert!(err.to_string().contains("power of two"), "{err}");
        }
        let mut b = Builder::new();
        b.kv("general.architecture", TYPE_STRING).str("llama");
        b.kv("general.alignment", TYPE_U64).u64(32);
        let err = parse(&b.file(32, 0)).unwrap_err();
        assert!(matches!(err, GgufError::Invalid { .. }), "{err:?}");

        // A different valid alignment moves the data section.
        let mut b = Builder::new();
        b.kv("general.architecture", TYPE_STRING).str("llama");
        b.kv("general.alignment", TYPE_U32).u32(256);
        b.tensor("t", &[4], 0, 0);
        let summary = parse(&b.file(256, 16)).unwrap();
        assert_eq!(summary.tensor_data_offset, 256);
        assert_eq!(summary.tensor_data_bytes, 16);
    }

    #[test]
    fn rejects_data_outside_the_file() {
        // The file ends before the padding does.
        let b = sample();
        let header = b.header();
        let err = parse(&header).unwrap_err();
        assert!(matches!(err, GgufError::Truncated { .. }), "{err:?}");
        assert!(err.to_string().contains("padding"), "{err}");

        // A tensor starting past the end of the data.
        let mut b = sample();
        b.tensor("late.weight", &[8], 0, 1 << 20);
        let err = parse(&b.file(32, 1024)).unwrap_err();
        assert!(matches!(err, GgufError::Truncated { .. }), "{err:?}");
        assert!(err.to_string().contains("late.weight"), "{err}");

        // A tensor offset that is not aligned.
        let mut b = sample();
        b.tensor("odd.weight", &[8], 0, 1000);
        let err = parse(&b.file(32, 1024)).unwrap_err();
        assert!(matches!(err, GgufError::Invalid { .. }), "{err:?}");

        // A quantized row that is not whole blocks, too many dimensions, too many elements.
        for (dims, ggml_type) in [
            (&[33u64, 2][..], 2u32),
            (&[1; 9][..], 0),
            (&[u64::MAX, 2][..], 0),
        ] {
            let mut b = sample();
            b.tensor("bad.weight", dims, ggml_type, 0);
            let err = parse(&b.file(32, 1024)).unwrap_err();
            assert!(
                matches!(err, GgufError::Invalid { .. } | GgufError::TooLarge { .. }),
                "{dims:?}: {err:?}"
            );
        }

        // A tensor of a type this reader does not know is only checked to start in the data.
        let mut b = sample();
        b.tensor("future.weight", &[8], 999, 1024 - 32);
        assert!(parse(&b.file(32, 1024)).is_ok());
    }

    #[test]
    fn needs_an_architecture() {
        let mut b = Builder::new();
        b.kv("general.name", TYPE_STRING).str("anonymous");
        let err = parse(&b.file(32, 0)).unwrap_err();
        assert!(err.to_string().contains("general.architecture"), "{err}");
    }

    #[test]
    fn converts_integers_and_falls_back() {
        let mut b = Builder::new();
        b.kv("llama.block_count", TYPE_I32).i32(-1);
        b.kv("llama.context_length", TYPE_U64)
            .u64(u64::from(u32::MAX) + 1);
        b.kv("llama.embedding_length", TYPE_STRING).str("64");
        b.kv("llama.attention.head_count_kv", TYPE_U16)
            .put(&8u16.to_le_bytes());
        b.kv("llama.attention.sliding_window", TYPE_U32).u32(512);
        b.kv("llama.vocab_size", TYPE_U32).u32(32000);
        b.kv("other.attention.head_count", TYPE_U32).u32(99);
        // The architecture may come after the keys that depend on it.
        b.kv("general.architecture", TYPE_STRING).str("llama");
        let s = parse(&b.file(32, 0)).unwrap();
        assert_eq!(s.block_count, None);
        assert_eq!(s.context_length, None);
        assert_eq!(s.embedding_length, None);
        assert_eq!(s.head_count, None);
        assert_eq!(s.head_count_kv, Some(vec![8]));
        assert_eq!(s.sliding_window, Some(512));
        assert_eq!(s.vocab_size, Some(32000));
        assert_eq!(s.name, None);
        assert!(!s.has_chat_template);
        assert_eq!(s.tensor_count, 0);
    }
}
