//! The KV cache of the one sequence a model decodes: per layer, keys and values in buffers that
//! grow in steps of [`STEP`] tokens (mlx-lm's `KVCache`), written in place.
//!
//! It outlives a request: the next request whose prompt starts with the same tokens keeps that
//! prefix and computes only the rest ([`KvCache::keep_prefix`]).

use mlx_rs::error::Exception;
use mlx_rs::ops::indexing::{Ellipsis, TryIndexMutOp, TryIndexOp};
use mlx_rs::ops::{concatenate, zeros_dtype};
use mlx_rs::Array;

/// Tokens a buffer grows by (mlx-lm's step).
pub const STEP: i32 = 256;

#[derive(Default)]
struct LayerCache {
    keys: Option<Array>,
    values: Option<Array>,
}

/// Keys and values of every layer, and the tokens they were computed from.
pub struct KvCache {
    layers: Vec<LayerCache>,
    offset: i32,
    /// The tokens whose keys and values the buffers hold, in order (`offset` of them once a
    /// forward pass ends).
    tokens: Vec<u32>,
}

impl KvCache {
    pub fn new(layers: usize) -> Self {
        Self {
            layers: (0..layers).map(|_| LayerCache::default()).collect(),
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
    pub fn update(
        &mut self,
        layer: usize,
        keys: &Array,
        values: &Array,
    ) -> Result<(Array, Array), Exception> {
        let length = keys.shape()[2];
        let end = self.offset + length;
        let cache = &mut self.layers[layer];
        grow(&mut cache.keys, keys, self.offset, end)?;
        grow(&mut cache.values, values, self.offset, end)?;
        let (Some(k), Some(v)) = (cache.keys.as_mut(), cache.values.as_mut()) else {
            return Err(Exception::custom("KV cache buffers missing after growth"));
        };
        k.try_index_mut((Ellipsis, self.offset..end, ..), keys)?;
        v.try_index_mut((Ellipsis, self.offset..end, ..), values)?;
        Ok((
            k.try_index((Ellipsis, ..end, ..))?,
            v.try_index((Ellipsis, ..end, ..))?,
        ))
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
            .flat_map(|l| [&l.keys, &l.values])
            .flatten()
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
}

/// Makes `buffer` hold at least `end` positions, in whole steps, keeping its first `offset`.
fn grow(buffer: &mut Option<Array>, like: &Array, offset: i32, end: i32) -> Result<(), Exception> {
    let capacity = buffer.as_ref().map_or(0, |b| b.shape()[2]);
    if end <= capacity {
        return Ok(());
    }
    let shape = like.shape();
    let steps = (end - offset + STEP - 1) / STEP;
    let fresh = zeros_dtype(&[shape[0], shape[1], steps * STEP, shape[3]], like.dtype())?;
    *buffer = Some(match buffer.take() {
        Some(old) => {
            let kept = old.try_index((Ellipsis, ..offset, ..))?;
            concatenate(&[kept, fresh], 2)?
        }
        None => fresh,
    });
    Ok(())
}
