"""mlx-lm's own greedy generation on an MLX model folder: the reference the MLX engine is held to.

    mlx_reference.py FOLDER MAX_TOKENS USER_MESSAGE [KV_BITS]

With KV_BITS, mlx-lm quantizes its KV cache to that many bits in groups of 64 from the first
pass on (quantized_kv_start=0), as Headroom's kv_cache_type q8_0 / q4_0 does on MLX.

Renders the chat with the folder's template (as Headroom does, then tokenized without adding
special tokens), generates greedily with mlx_lm.stream_generate, and prints
{"text", "tokens", "prompt_tokens"} as JSON.
"""

import json
import sys

from mlx_lm import load, stream_generate
from mlx_lm.sample_utils import make_sampler

folder, max_tokens, user = sys.argv[1], int(sys.argv[2]), sys.argv[3]
kv = {"kv_bits": int(sys.argv[4]), "kv_group_size": 64, "quantized_kv_start": 0} if len(sys.argv) > 4 else {}
model, tokenizer = load(folder)
prompt = tokenizer.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False)
ids = tokenizer.encode(prompt, add_special_tokens=False)
text, tokens = "", []
for response in stream_generate(model, tokenizer, ids, max_tokens=max_tokens, sampler=make_sampler(temp=0.0), **kv):
    text += response.text
    if response.finish_reason != "stop":
        tokens.append(response.token)
print(json.dumps({"text": text, "tokens": tokens, "prompt_tokens": len(ids)}))
