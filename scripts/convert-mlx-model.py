"""Turns a Llama-family GGUF file into an MLX model folder, as mlx-community publishes them.

    convert-mlx-model.py MODEL.gguf OUT_DIR

The folder holds config.json, model.safetensors (MLX's affine quantization where the GGUF was
Q4_0/Q4_1/Q8_0, as MLX's own GGUF reader gives it), tokenizer.json and tokenizer_config.json
with the chat template. GGUF keeps Llama's Q/K rows in llama.cpp's interleaved order, so the
config asks for the "traditional" RoPE layout (`rope_traditional`, which mlx-lm's Llama reads).

Offline, with pinned packages: mlx (+ mlx-cpu), gguf, tokenizers. The test suite builds the MLX
test model with it; the same folder is what `mlx_lm.generate` is compared against.
"""

import json
import os
import sys

import gguf
import mlx.core as mx
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}


def hf_name(name):
    base, part = name.rsplit(".", 1)
    if base == "token_embd":
        return f"model.embed_tokens.{part}"
    if base == "output_norm":
        return f"model.norm.{part}"
    if base == "output":
        return f"lm_head.{part}"
    blk, layer, kind = base.split(".", 2)
    if blk != "blk" or kind not in LAYER_NAMES:
        sys.exit(f"unexpected tensor {name}")
    return f"model.layers.{layer}.{LAYER_NAMES[kind]}.{part}"


def field(reader, key):
    f = reader.get_field(key)
    return None if f is None else f.contents()


def main(src, out):
    reader = gguf.GGUFReader(src)
    arch = field(reader, "general.architecture")
    if arch != "llama":
        sys.exit(f"only Llama-family GGUFs convert here, not {arch}")
    weights, _ = mx.load(src, return_metadata=True)
    tensors = {hf_name(k): v for k, v in weights.items()}
    # Bits per quantized module (a Q4_1 file keeps its embedding at 8 bits): the most common
    # is the default, the others per-module entries, as mlx-lm reads them.
    bits = {}
    for name, scales in tensors.items():
        if name.endswith(".scales"):
            module = name[: -len(".scales")]
            packed = tensors[f"{module}.weight"].shape[-1] * 32
            bits[module] = packed // (scales.shape[-1] * 32)

    a = lambda k: field(reader, f"llama.{k}")
    heads = int(a("attention.head_count"))
    hidden = int(a("embedding_length"))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": int(a("feed_forward_length")),
        "num_hidden_layers": int(a("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(a("attention.head_count_kv")),
        "head_dim": int(a("rope.dimension_count") or hidden // heads),
        "rms_norm_eps": float(a("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(a("rope.freq_base") or 10000.0),
        "rope_traditional": True,
        "max_position_embeddings": int(a("context_length")),
        "vocab_size": len(field(reader, "tokenizer.ggml.tokens")),
        "tie_word_embeddings": "lm_head.weight" not in tensors,
        "torch_dtype": "float16",
    }
    if bits:
        common = max(set(bits.values()), key=list(bits.values()).count)
        config["quantization"] = {"group_size": 32, "bits": common}
        for module, b in sorted(bits.items()):
            if b != common:
                config["quantization"][module] = {"group_size": 32, "bits": b}

    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges")]
    if field(reader, "tokenizer.ggml.model") != "gpt2":
        sys.exit("only byte-level BPE (gpt2) tokenizers convert here")
    tokenizer = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    # SmolLM's pre-tokenizer (llama.cpp's "smollm"): single digits, then GPT-2's byte level.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    # Control tokens (GGUF token type 3) are special: matched whole, never split.
    tokenizer.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(types) if t == 3])

    def token(key):
        i = field(reader, f"tokenizer.ggml.{key}_token_id")
        return None if i is None else tokens[int(i)]

    os.makedirs(out, exist_ok=True)
    mx.save_safetensors(os.path.join(out, "model.safetensors"), tensors, metadata={"format": "mlx"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    tokenizer.save(os.path.join(out, "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": field(reader, "tokenizer.chat_template"),
        "bos_token": token("bos"),
        "eos_token": token("eos"),
        "unk_token": token("unknown"),
        "pad_token": token("padding"),
        "add_bos_token": bool(field(reader, "tokenizer.ggml.add_bos_token")),
        "model_max_length": config["max_position_embeddings"],
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({k: v for k, v in tokenizer_config.items() if v is not None}, f, indent=2)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
