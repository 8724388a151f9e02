//! The Llama architecture on MLX (SmolLM2, Llama 3, Mistral, Qwen 2), written op for op as
//! mlx-lm's `models/llama.py` computes it, so that the same weights give the same tokens.

use std::collections::HashMap;

use mlx_rs::error::Exception;
use mlx_rs::fast::{self, ScaledDotProductAttentionMask};
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::ops::{dequantize, quantized_matmul, select, softmax_axis};
use mlx_rs::{Array, Dtype};

use crate::cache::{Held, KvCache, QUANT_GROUP};
use crate::config::{ModelConfig, QuantSpec};

type Result<T> = std::result::Result<T, Exception>;

/// A projection: dense, or MLX-quantized (packed `u32` weights with a scale and bias per group).
pub enum Linear {
    Dense {
        weight: Array,
        bias: Option<Array>,
    },
    Quantized {
        weight: Array,
        scales: Array,
        biases: Array,
        bias: Option<Array>,
        spec: QuantSpec,
    },
}

impl Linear {
    fn forward(&self, x: &Array) -> Result<Array> {
        let (y, bias) = match self {
            Self::Dense { weight, bias } => (x.matmul(weight.t())?, bias),
            Self::Quantized {
                weight,
                scales,
                biases,
                bias,
                spec,
            } => (
                quantized_matmul(x, weight, scales, biases, true, spec.group_size, spec.bits)?,
                bias,
            ),
        };
        match bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }

    /// Rows of the matrix as embeddings (`ids` of any shape).
    fn embed(&self, ids: &Array) -> Result<Array> {
        match self {
            Self::Dense { weight, .. } => weight.take_axis(ids, 0),
            Self::Quantized {
                weight,
                scales,
                biases,
                spec,
                ..
            } => dequantize(
                weight.take_axis(ids, 0)?,
                scales.take_axis(ids, 0)?,
                &biases.take_axis(ids, 0)?,
                spec.group_size,
                spec.bits,
            ),
        }
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

struct Layer {
    attention: Attention,
    mlp: Mlp,
    input_norm: Array,
    post_attention_norm: Array,
}

/// A loaded model: its arrays and shape. The KV cache is the caller's ([`KvCache`]).
pub struct Llama {
    config: ModelConfig,
    embed: Linear,
    layers: Vec<Layer>,
    norm: Array,
    /// `None`: the output projection is the embedding (tied).
    lm_head: Option<Linear>,
}

impl Llama {
    /// Takes the model's arrays out of `weights` (Hugging Face names); what is left over is
    /// ignored (rotary tables some exporters save).
    pub fn from_weights(
        config: ModelConfig,
        mut weights: HashMap<String, Array>,
    ) -> std::result::Result<Self, String> {
        let w = &mut weights;
        let embed = take_linear(&config, w, "model.embed_tokens")?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers as usize);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mut linear = |name: &str| take_linear(&config, w, &format!("{p}.{name}"));
            let attention = Attention {
                q: linear("self_attn.q_proj")?,
                k: linear("self_attn.k_proj")?,
                v: linear("self_attn.v_proj")?,
                o: linear("self_attn.o_proj")?,
            };
            let mlp = Mlp {
                gate: linear("mlp.gate_proj")?,
                up: linear("mlp.up_proj")?,
                down: linear("mlp.down_proj")?,
            };
            layers.push(Layer {
                attention,
                mlp,
                input_norm: take(w, &format!("{p}.input_layernorm.weight"))?,
                post_attention_norm: take(w, &format!("{p}.post_attention_layernorm.weight"))?,
            });
        }
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(take_linear(&config, w, "lm_head")?)
        };
        let norm = take(&mut weights, "model.norm.weight")?;
        Ok(Self {
            config,
            embed,
            layers,
            norm,
            lm_head,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Bytes the model's arrays hold.
    pub fn nbytes(&self) -> u64 {
        self.arrays().iter().map(|a| a.nbytes() as u64).sum()
    }

    /// Every array, for one evaluation at load (MLX loads lazily).
    pub fn arrays(&self) -> Vec<&Array> {
        let mut out = vec![&self.norm];
        fn push<'a>(out: &mut Vec<&'a Array>, l: &'a Linear) {
            match l {
                Linear::Dense { weight, bias } => {
                    out.push(weight);
                    out.extend(bias);
                }
                Linear::Quantized {
                    weight,
                    scales,
                    biases,
                    bias,
                    ..
                } => {
                    out.extend([weight, scales, biases]);
                    out.extend(bias);
                }
            }
        }
        push(&mut out, &self.embed);
        if let Some(head) = &self.lm_head {
            push(&mut out, head);
        }
        for l in &self.layers {
            for p in [
                &l.attention.q,
                &l.attention.k,
                &l.attention.v,
                &l.attention.o,
                &l.mlp.gate,
                &l.mlp.up,
                &l.mlp.down,
            ] {
                push(&mut out, p);
            }
            out.extend([&l.input_norm, &l.post_attention_norm]);
        }
        out
    }

    /// Logits of the last position after feeding `tokens`, extending `cache`.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Array> {
        let c = &self.config;
        let length = tokens.len() as i32;
        let ids = Array::from_slice(tokens, &[1, length]);
        let mut h = self.embed.embed(&ids)?;
        let heads = c.num_attention_heads;
        let kv_heads = c.kv_heads();
        let head_dim = c.head_dim();
        let scale = (head_dim as f32).powf(-0.5);
        let offset = cache.offset();
        for (i, layer) in self.layers.iter().enumerate() {
            let x = fast::rms_norm(&h, Some(&layer.input_norm), c.rms_norm_eps)?;
            let a = &layer.attention;
            let split = |t: Array, n: i32| {
                t.reshape(&[1, length, n, -1])?
                    .transpose_axes(&[0, 2, 1, 3])
            };
            let q = split(a.q.forward(&x)?, heads)?;
            let k = split(a.k.forward(&x)?, kv_heads)?;
            let v = split(a.v.forward(&x)?, kv_heads)?;
            let rope = |t: &Array| {
                fast::rope(
                    t,
                    head_dim,
                    c.rope_traditional,
                    c.rope_theta,
                    1.0,
                    offset,
                    None,
                )
            };
            let q = rope(&q)?;
            let k = rope(&k)?;
            let out = attend(&q, cache.update(i, &k, &v)?, scale)?;
            let out = out
                .transpose_axes(&[0, 2, 1, 3])?
                .reshape(&[1, length, -1])?;
            let h2 = h.add(a.o.forward(&out)?)?;
            let x = fast::rms_norm(&h2, Some(&layer.post_attention_norm), c.rms_norm_eps)?;
            let m = &layer.mlp;
            let gate = m.gate.forward(&x)?;
            let silu = gate.multiply(mlx_rs::ops::sigmoid(&gate)?)?;
            h = h2.add(m.down.forward(&silu.multiply(m.up.forward(&x)?)?)?)?;
        }
        cache.advance(tokens);
        let last = h.try_index((.., -1.., ..))?;
        let last = fast::rms_norm(&last, Some(&self.norm), c.rms_norm_eps)?;
        let logits = match &self.lm_head {
            Some(head) => head.forward(&last)?,
            None => self.embed.forward(&last)?,
        };
        logits.reshape(&[-1])
    }
}

/// Attention of `queries` (`[1, heads, L, head_dim]`, causal when L > 1) over what a layer
/// holds. Plain keys go through MLX's fused kernel; quantized ones through two quantized
/// matmuls, op for op as mlx-lm's `quantized_scaled_dot_product_attention`.
fn attend(queries: &Array, held: Held, scale: f32) -> Result<Array> {
    let length = queries.shape()[2];
    let (keys, values, bits) = match held {
        Held::Plain { keys, values } => {
            let mask = (length > 1).then_some(ScaledDotProductAttentionMask::Causal);
            return fast::scaled_dot_product_attention(queries, &keys, &values, scale, mask, None);
        }
        Held::Quantized { keys, values, bits } => (keys, values, bits),
    };
    let shape = queries.shape();
    let (heads, head_dim) = (shape[1], shape[3]);
    let kv_heads = keys[0].shape()[1];
    let repeats = heads / kv_heads;
    let mut q = queries.multiply(Array::from_f32(scale).as_dtype(queries.dtype())?)?;
    let (mut keys, mut values) = (keys, values);
    if repeats > 1 {
        // Each KV head serves `repeats` query heads: a broadcast axis, not a copy.
        q = q.reshape(&[1, kv_heads, repeats, length, head_dim])?;
        for part in keys.iter_mut().chain(values.iter_mut()) {
            *part = part.expand_dims(-3)?;
        }
    }
    let [k, k_scales, k_biases] = &keys;
    let mut scores = quantized_matmul(&q, k, k_scales, k_biases, true, QUANT_GROUP, bits)?;
    if length > 1 {
        let held = scores.shape()[scores.ndim() - 1];
        let rows = Array::arange::<i32, i32>(held - length, held, None)?.reshape(&[-1, 1])?;
        let columns = Array::arange::<i32, i32>(None, held, None)?.reshape(&[1, -1])?;
        let lowest = Array::from_f32(lowest_finite(scores.dtype())).as_dtype(scores.dtype())?;
        scores = select(rows.ge(&columns)?, &scores, &lowest)?;
    }
    let weights = softmax_axis(&scores, -1, true)?;
    let [v, v_scales, v_biases] = &values;
    let out = quantized_matmul(&weights, v, v_scales, v_biases, false, QUANT_GROUP, bits)?;
    if repeats > 1 {
        out.reshape(&[1, heads, length, head_dim])
    } else {
        Ok(out)
    }
}

/// The most negative finite value of a float type (`mx.finfo(dtype).min`), what masked scores
/// are set to.
fn lowest_finite(dtype: Dtype) -> f32 {
    match dtype {
        Dtype::Float16 => -65504.0,
        Dtype::Bfloat16 => -3.389_531_4e38,
        _ => f32::MIN,
    }
}

fn take(weights: &mut HashMap<String, Array>, name: &str) -> std::result::Result<Array, String> {
    weights
        .remove(name)
        .ok_or_else(|| format!("the weights have no tensor '{name}'"))
}

fn take_linear(
    config: &ModelConfig,
    weights: &mut HashMap<String, Array>,
    module: &str,
) -> std::result::Result<Linear, String> {
    let weight = take(weights, &format!("{module}.weight"))?;
    let bias = weights.remove(&format!("{module}.bias"));
    match weights.remove(&format!("{module}.scales")) {
        Some(scales) => {
            let spec = config
                .quantization
                .as_ref()
                .map(|q| q.spec(module))
                .ok_or_else(|| {
                    format!("'{module}' is quantized but config.json has no quantization")
                })?;
            let biases = take(weights, &format!("{module}.biases"))?;
            Ok(Linear::Quantized {
                weight,
                scales,
                biases,
                bias,
                spec,
            })
        }
        None => Ok(Linear::Dense { weight, bias }),
    }
}
