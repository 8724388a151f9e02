#!/usr/bin/env python3
"""Converts a sentence-transformers BERT model (safetensors) to GGUF without PyTorch.

Usage: convert-embedding-model.py MODEL_DIR OUT.gguf

llama.cpp's convert_hf_to_gguf.py needs torch and transformers (gigabytes) only to read the
tensors and the tokenizer; this does the same for a BERT embedding model with numpy and the
`gguf` package alone. It follows the converter's BertModel path (llama.cpp as vendored in
llama-cpp-python 0.3.36) step by step, with its default --outtype (F16 for matrices from an F32
checkpoint, F32 for vectors, norms, position and token-type embeddings), so that llama.cpp reads
the result as it reads the converter's. MODEL_DIR is named as the model (the converter takes
general.name from it), holds config.json, model.safetensors, tokenizer.json, modules.json and
the pooling config. The output is byte-for-byte the same on every run.
"""

import json
import logging
import sys
from pathlib import Path

import numpy as np
import gguf

# The token ids that convert_hf_to_gguf.py's get_vocab_base_pre() hashes, for its check text,
# map this hash to "bert-bge" (the uncased BERT WordPiece tokenizer that bge-small and
# all-MiniLM share). Worked out once with the `tokenizers` package; not recomputed here so
# the conversion needs no tokenizer library.
TOKENIZER_PRE = "bert-bge"


def main(model_dir: Path, out: Path) -> None:
    hparams = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if hparams.get("architectures", [None])[0] not in ("BertModel", "BertForMaskedLM"):
        sys.exit(f"not a BERT model: {hparams.get('architectures')}")

    arch = gguf.MODEL_ARCH.BERT
    block_count = hparams["num_hidden_layers"]
    tensor_map = gguf.get_tensor_name_map(arch, block_count)
    ftype = gguf.LlamaFileType.MOSTLY_F16  # what --outtype auto picks for an F32 checkpoint
    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[arch])

    # --- tensors (ModelBase.prepare_tensors + BertModel.filter_tensors) ---
    def keep_f32(new_name: str, n_dims: int) -> bool:
        if n_dims <= 1 or new_name.endswith("_norm.weight") or not new_name.endswith(".weight"):
            return True
        for key in (gguf.MODEL_TENSOR.POS_EMBD, gguf.MODEL_TENSOR.TOKEN_TYPES):
            if new_name == gguf.TENSOR_NAMES[key] + ".weight":
                return True
        return False

    with gguf.utility.SafetensorsLocal(model_dir / "model.safetensors") as tensors:  # sorted by name
        for name, t in tensors.items():
            if name.startswith("bert."):
                name = name[5:]
            if name.endswith(".gamma"):
                name = name[:-6] + ".weight"
            if name.endswith(".beta"):
                name = name[:-5] + ".bias"
            if name in ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"):
                continue
            if name.startswith(("cls.predictions", "cls.seq_relationship")):
                continue
            if t.dtype != "F32":
                sys.exit(f"{name}: expected an F32 checkpoint, found {t.dtype}")
            data = np.frombuffer(t.mmap_bytes(), dtype=np.float32).reshape(t.shape)
            new_name = tensor_map.get_name(key=name, try_suffixes=(".weight", ".bias"))
            if new_name is None:
                sys.exit(f"can not map tensor {name!r}")
            qtype = gguf.GGMLQuantizationType.F32 if keep_f32(new_name, data.ndim) else gguf.GGMLQuantizationType.F16
            writer.add_tensor(new_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)

    # --- general.* metadata (ModelBase.prepare_metadata) ---
    writer.add_type(gguf.GGUFType.MODEL)
    total_params, shared_params, expert_params, expert_count = writer.get_total_parameter_count()
    metadata = gguf.Metadata.load(None, model_dir, None, total_params)
    if metadata.name is None:
        metadata.name = model_dir.name
    if metadata.size_label is None and total_params > 0:
        metadata.size_label = gguf.size_label(total_params, shared_params, expert_params, expert_count)
    metadata.set_gguf_meta_model(writer)

    # --- hyperparameters (TextModel/BertModel.set_gguf_parameters) ---
    writer.add_block_count(block_count)
    writer.add_context_length(hparams["max_position_embeddings"])
    writer.add_embedding_length(hparams["hidden_size"])
    writer.add_feed_forward_length(hparams["intermediate_size"])
    writer.add_head_count(hparams["num_attention_heads"])
    writer.add_layer_norm_eps(hparams["layer_norm_eps"])
    writer.add_file_type(ftype)
    writer.add_causal_attention(False)
    writer.add_pooling_type(pooling_type(model_dir))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    # --- vocabulary (TextModel.get_vocab_base + BertModel.set_vocab) ---
    tok = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    if tok["model"]["type"] != "WordPiece":
        sys.exit(f"expected a WordPiece tokenizer, found {tok['model']['type']}")
    reverse_vocab = {i: t for t, i in tok["model"]["vocab"].items()}
    for added in tok.get("added_tokens", []):
        reverse_vocab[added["id"]] = added["content"]
    special = {a["id"] for a in tok.get("added_tokens", []) if a.get("special")}
    vocab_size = hparams.get("vocab_size", len(reverse_vocab))
    tokens, toktypes = [], []
    for i in range(vocab_size):
        if i not in reverse_vocab:
            tokens.append(f"[PAD{i}]")
            toktypes.append(gguf.TokenType.UNUSED)
        elif i in special:
            tokens.append(reverse_vocab[i])
            toktypes.append(gguf.TokenType.CONTROL)
        else:
            # phantom-space form: "##x" continues a word, anything else starts one
            t = reverse_vocab[i]
            tokens.append(t[2:] if t.startswith("##") else "\u2581" + t)
            toktypes.append(gguf.TokenType.NORMAL)
    writer.add_token_type_count(hparams.get("type_vocab_size", 1))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre(TOKENIZER_PRE)
    writer.add_token_list(tokens)
    writer.add_token_types(toktypes)
    # gguf has no key for the CLS id any more (llama.cpp uses BOS); the converter warns and skips it too
    logging.getLogger("gguf.vocab").setLevel(logging.ERROR)
    gguf.SpecialVocab(model_dir, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)

    writer.write_header_to_file(path=out)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()


def pooling_type(model_dir: Path) -> "gguf.PoolingType":
    """The sentence-transformers Pooling module's mode (TextModel._try_set_pooling_type)."""
    modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    path = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
    pooling = json.loads((model_dir / path / "config.json").read_text(encoding="utf-8"))
    if pooling.get("pooling_mode_mean_tokens"):
        return gguf.PoolingType.MEAN
    if pooling.get("pooling_mode_cls_token"):
        return gguf.PoolingType.CLS
    if pooling.get("pooling_mode_lasttoken"):
        return gguf.PoolingType.LAST
    sys.exit(f"unsupported pooling: {pooling}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2])
    main(Path(sys.argv[1]), Path(sys.argv[2]))
