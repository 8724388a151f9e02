//! The KV cache of the one sequence a model decodes: per layer, keys and values in buffers that
//! grow in steps of [`STEP`] tokens (mlx-lm's `KVCache`), written in place.
//!
//! With `kv_cache_type` q8_0 or q4_0 the buffers hold keys and values quantized as mlx-lm's
//! `QuantizedKVCache` holds them (MLX's affine quantization: packed `u32` values with a scale and
//! a bias per group of [`QUANT_GROUP`] elements), and attention reads them through
//! `quantized_matmul` (see `llama::attend`).
//!
//! It outlives a request: the next request whose prompt starts with the same tokens keeps that
//! prefix and computes only the rest ([`KvCache::keep_prefix`]); at unload it can be written to
//! disk and read back at the next load ([`KvCache::save`], [`KvCache::restore`]).

use std::collections::HashMap;
use std::path::Path;

use mlx_rs::error::Exception;
use mlx_rs::ops::indexing::{Ellipsis, TryIndexMutOp, TryIndexOp};
use mlx_rs::ops::{concatenate, quantize, zeros_dtype};
use mlx_rs::Array;

use headroom_core::engine::KvCacheType;

/// Tokens a buffer grows by (mlx-lm's step).
pub const STEP: i32 = 256;

/// Elements sharing a scale and a bias in a quantized cache (mlx-lm's `kv_group_size`).
pub const QUANT_GROUP: i32 = 64;

/// How the buffers store keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// The model's own dtype.
    Plain,
    /// MLX affine quantization with this many bits per element.
    Quantized { bits: i32 },
}

impl Storage {
    /// llama.cpp's names map to MLX's bit widths (its groups are 64 elements, not 32).
    pub fn of(kind: KvCacheType) -> Self {
        match kind {
            KvCacheType::F16 => Self::Plain,
            KvCacheType::Q8_0 => Self::Quantized { bits: 8 },
            KvCacheType::Q4_0 => Self::Quantized { bits: 4 },
        }
    }

    /// Bytes one head's keys (or values) of one token take, for a head of `head_dim` elements
    /// of `element_bytes` each.
    pub fn bytes_per_head(self, head_dim: u64, element_bytes: u64) -> u64 {
        match self {
            Self::Plain => head_dim * element_bytes,
            Self::Quantized { bits } => {
                let groups = head_dim.div_ceil(QUANT_GROUP as u64);
                head_dim * bits as u64 / 8 + groups * 2 * element_bytes
            }
        }
    }
}

/// What a layer holds, for attention: every position up to the pass's end.
pub enum Held {
    Plain {
        keys: Array,
        values: Array,
    },
    /// Quantized keys and values: `[packed, scales, biases]` each.
    Quantized {
        keys: [Array; 3],
        values: [Array; 3],
        bits: i32,
    },
}

/// One layer's buffers: one part per array (one when plain; packed, scales and biases when
/// quantized).
#[derive(Default)]
struct LayerCache {
    keys: Vec<Array>,
    values: Vec<Array>,
}

/// Keys and values of every layer, and the tokens they were computed from.
pub struct KvCache {
    layers: Vec<LayerCache>,
    storage: Storage,
    /// The model's attention shape (a saved cache is read only by a model of the same).
    shape: String,
    offset: i32,
    /// The tokens whose keys and values the buffers hold, in order (`offset` of them once a
    /// forward pass ends).
    tokens: Vec<u32>,
}

impl KvCache {
    /// A cache for `layers` layers of `kv_heads` heads of `head_dim` elements.
    pub fn new(layers: usize, kv_heads: i32, head_dim: i32, storage: Storage) -> Self {
        Self {
            layers: (0..layers).map(|_| LayerCache::default()).collect(),
            storage,
            shape: format!("{layers} layers, {kv_heads} KV heads of {head_dim}"),
            offset: 0,
            tokens: Vec::new(),
        }
    }

    /// Tokens already in the cache; the next token's position.
    pub fn offset(&self) -> i32 {
        self.offset
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Writes `keys`/`values` (`[1, heads, L, head_dim]`) of `layer` after what it holds, and
    /// returns everything it holds now, those included.
    ///
    /// A quantized cache stores the quantized pass, but a pass over an empty cache attends to
    /// its own keys and values as computed: mlx-lm quantizes a cache after its first pass, so
    /// the first pass of a prompt is exact there too, and the two give the same tokens.
    pub fn update(
        &mut self,
        layer: usize,
        keys: &Array,
        values: &Array,
    ) -> Result<Held, Exception> {
        let start = self.offset;
        let end = start + keys.shape()[2];
        let (key_parts, value_parts) = match self.storage {
            Storage::Plain => (vec![keys.clone()], vec![values.clone()]),
            Storage::Quantized { bits } => (
                parts(quantize(keys, QUANT_GROUP, bits)?),
                parts(quantize(values, QUANT_GROUP, bits)?),
            ),
        };
        let cache = &mut self.layers[layer];
        let keys_held = write(&mut cache.keys, &key_parts, start, end)?;
        let values_held = write(&mut cache.values, &value_parts, start, end)?;
        Ok(match self.storage {
            Storage::Quantized { .. } if start == 0 => Held::Plain {
                keys: keys.clone(),
                values: values.clone(),
            },
            Storage::Plain => {
                let (Some(keys), Some(values)) =
                    (keys_held.into_iter().next(), values_held.into_iter().next())
                else {
                    return Err(Exception::custom("KV cache buffers missing"));
                };
                Held::Plain { keys, values }
            }
            Storage::Quantized { bits } => Held::Quantized {
                keys: triple(keys_held)?,
                values: triple(values_held)?,
                bits,
            },
        })
    }

    /// Ends a forward pass over `tokens`: they are now in the cache.
    pub fn advance(&mut self, tokens: &[u32]) {
        self.offset += tokens.len() as i32;
        self.tokens.extend_from_slice(tokens);
    }

    /// Keeps the first `keep` tokens (positions past them are overwritten by the next pass).
    pub fn keep_prefix(&mut self, keep: usize) {
        let keep = keep.min(self.tokens.len());
        self.tokens.truncate(keep);
        self.offset = keep as i32;
    }

    /// The buffers, to evaluate after a pass over part of a prompt.
    pub fn arrays(&self) -> Vec<&Array> {
        self.layers
            .iter()
            .flat_map(|l| l.keys.iter().chain(&l.values))
            .collect()
    }

    /// Bytes the buffers hold.
    pub fn nbytes(&self) -> u64 {
        self.arrays().iter().map(|a| a.nbytes() as u64).sum()
    }

    /// Lets the buffers go (unused memory goes back to MLX's allocator cache).
    pub fn clear(&mut self) {
        for l in &mut self.layers {
            *l = LayerCache::default();
        }
        self.offset = 0;
        self.tokens.clear();
    }

    /// Writes what the cache holds (its tokens' positions only) to `path`, a safetensors file
    /// whose metadata names the storage, so that another `kv_cache_type` does not read it.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let end = self.offset;
        let mut arrays = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for (kind, buffers) in [("keys", &layer.keys), ("values", &layer.values)] {
                for (j, buffer) in buffers.iter().enumerate() {
                    let held = buffer
                        .try_index((Ellipsis, ..end, ..))
                        .map_err(|e| e.to_string())?;
                    arrays.push((format!("{i}.{kind}.{j}"), held));
                }
            }
        }
        let metadata = HashMap::from([
            ("storage".to_string(), self.storage_name()),
            ("shape".to_string(), self.shape.clone()),
            ("tokens".to_string(), end.to_string()),
        ]);
        Array::save_safetensors(arrays, &metadata, path).map_err(|e| e.to_string())
    }

    /// Reads a cache [`save`](Self::save) wrote, holding `tokens`. One that does not fit this
    /// model and storage (its attention shape, storage, token count, arrays) is refused and the
    /// cache left empty.
    pub fn restore(&mut self, path: &Path, tokens: &[u32]) -> Result<(), String> {
        self.clear();
        let result = self.read(path, tokens);
        if result.is_err() {
            self.clear();
        }
        result
    }

    fn read(&mut self, path: &Path, tokens: &[u32]) -> Result<(), String> {
        let (mut arrays, metadata) =
            Array::load_safetensors_with_metadata(path).map_err(|e| e.to_string())?;
        if metadata.get("storage") != Some(&self.storage_name()) {
            return Err("saved with another KV cache type".into());
        }
        if metadata.get("shape") != Some(&self.shape) {
            return Err("saved by a model of another shape".into());
        }
        let n = i32::try_from(tokens.len()).map_err(|e| e.to_string())?;
        if metadata.get("tokens") != Some(&n.to_string()) {
            return Err("its token count does not match its sidecar".into());
        }
        let per_kind = match self.storage {
            Storage::Plain => 1,
            Storage::Quantized { .. } => 3,
        };
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for (kind, buffers) in [("keys", &mut layer.keys), ("values", &mut layer.values)] {
                for j in 0..per_kind {
                    let array = arrays
                        .remove(&format!("{i}.{kind}.{j}"))
                        .ok_or_else(|| format!("layer {i} has no {kind}"))?;
                    let shape = array.shape();
                    if shape.len() != 4 || shape[0] != 1 || shape[2] != n {
                        return Err(format!("layer {i}'s {kind} have shape {shape:?}"));
                    }
                    buffers.push(array);
                }
            }
        }
        if !arrays.is_empty() {
            return Err(format!("{} arrays of another model", arrays.len()));
        }
        mlx_rs::transforms::eval(self.arrays()).map_err(|e| e.to_string())?;
        self.offset = n;
        self.tokens = tokens.to_vec();
        Ok(())
    }

    fn storage_name(&self) -> String {
        match self.storage {
            Storage::Plain => "plain".into(),
            Storage::Quantized { bits } => format!("affine{bits}g{QUANT_GROUP}"),
        }
    }
}

/// Writes each of `pieces` into its buffer at `start..end`, growing the buffers as needed, and
/// returns each buffer's positions up to `end`.
fn write(
    buffers: &mut Vec<Array>,
    pieces: &[Array],
    start: i32,
    end: i32,
) -> Result<Vec<Array>, Exception> {
    buffers.resize_with(pieces.len(), || Array::from_slice::<f32>(&[], &[0]));
    pieces
        .iter()
        .zip(buffers.iter_mut())
        .map(|(piece, buffer)| {
            grow(buffer, piece, start, end)?;
            buffer.try_index_mut((Ellipsis, start..end, ..), piece)?;
            buffer.try_index((Ellipsis, ..end, ..))
        })
        .collect()
}

/// Makes `buffer` hold at least `end` positions, in whole steps, keeping its first `offset`.
/// A buffer of another rank than `like` (the empty placeholder) is started afresh.
fn grow(buffer: &mut Array, like: &Array, offset: i32, end: i32) -> Result<(), Exception> {
    let fits = buffer.ndim() == like.ndim();
    let capacity = if fits { buffer.shape()[2] } else { 0 };
    if end <= capacity {
        return Ok(());
    }
    let shape = like.shape();
    let steps = (end - offset + STEP - 1) / STEP;
    let fresh = zeros_dtype(&[shape[0], shape[1], steps * STEP, shape[3]], like.dtype())?;
    *buffer = if fits && offset > 0 {
        let kept = buffer.try_index((Ellipsis, ..offset, ..))?;
        concatenate(&[kept, fresh], 2)?
    } else {
        fresh
    };
    Ok(())
}

fn parts((packed, scales, biases): (Array, Array, Array)) -> Vec<Array> {
    vec![packed, scales, biases]
}

fn triple(parts: Vec<Array>) -> Result<[Array; 3], Exception> {
    <[Array; 3]>::try_from(parts)
        .map_err(|_| Exception::custom("a quantized KV buffer without its scales and biases"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::random::normal;

    /// A cache of 2 layers, 2 KV heads of 64, after one pass over `n` tokens.
    fn filled(storage: Storage, n: i32) -> KvCache {
        let mut cache = KvCache::new(2, 2, 64, storage);
        for layer in 0..2 {
            let keys = normal::<f32>(&[1, 2, n, 64], None, None, None).expect("keys");
            let values = normal::<f32>(&[1, 2, n, 64], None, None, None).expect("values");
            cache.update(layer, &keys, &values).expect("update");
        }
        cache.advance(&(0..n as u32).collect::<Vec<_>>());
        cache
    }

    fn same(a: &KvCache, b: &KvCache) -> bool {
        let end = a.offset();
        a.arrays().iter().zip(b.arrays()).all(|(x, y)| {
            let x = x.try_index((Ellipsis, ..end, ..)).expect("slice");
            let y = y.try_index((Ellipsis, ..end, ..)).expect("slice");
            x.eq_values(&y).unwrap_or(false)
        })
    }

    #[test]
    fn a_saved_cache_reads_back_as_it_was_and_only_into_its_own_kind() {
        let dir = tempfile::tempdir().expect("temp dir");
        for storage in [Storage::Plain, Storage::Quantized { bits: 4 }] {
            let cache = filled(storage, 40);
            let path = dir.path().join("state.safetensors");
            cache.save(&path).expect("saved");
            let tokens: Vec<u32> = (0..40).collect();

            let mut back = KvCache::new(2, 2, 64, storage);
            back.restore(&path, &tokens).expect("restored");
            assert_eq!((back.offset(), back.tokens()), (40, tokens.as_slice()));
            assert!(same(&cache, &back), "{storage:?}: the same keys and values");
            // It grows on from what it read.
            let more = normal::<f32>(&[1, 2, 3, 64], None, None, None).expect("more");
            back.update(0, &more, &more).expect("grows");

            let other = match storage {
                Storage::Plain => Storage::Quantized { bits: 8 },
                Storage::Quantized { .. } => Storage::Plain,
            };
            let mut wrong = KvCache::new(2, 2, 64, other);
            let refused = wrong.restore(&path, &tokens).expect_err("another storage");
            assert!(refused.contains("another KV cache type"), "{refused}");
            assert_eq!(wrong.offset(), 0);
            let mut wrong = KvCache::new(3, 2, 64, storage);
            assert!(wrong.restore(&path, &tokens).is_err(), "another shape");
            let mut wrong = KvCache::new(2, 2, 64, storage);
            assert!(wrong.restore(&path, &tokens[..39]).is_err(), "other tokens");
        }
    }

    #[test]
    fn a_quantized_cache_holds_what_its_bits_say() {
        let plain = filled(Storage::Plain, 10).nbytes() as f64;
        // f32 test arrays: 256 bytes per head; 8 bits is 64 bytes and an f32 scale and bias.
        let q8 = filled(Storage::Quantized { bits: 8 }, 10).nbytes() as f64;
        assert!((q8 / plain - 72.0 / 256.0).abs() < 1e-9, "{}", q8 / plain);
        assert_eq!(
            Storage::Quantized { bits: 8 }.bytes_per_head(64, 4),
            72,
            "the estimate's arithmetic"
        );
    }
}
