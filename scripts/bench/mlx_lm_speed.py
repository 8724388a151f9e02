"""mlx-lm's own speed on an MLX model folder, timed as the benchmark times Headroom's stream.

    mlx_lm_speed.py FOLDER MAX_TOKENS PROMPT [PROMPT ...]

Loads the model once, then for each prompt (plain text, tokenized without special tokens, as
Headroom's /v1/completions does) generates greedily with mlx_lm.stream_generate and prints one
JSON line: prompt_tokens, first (seconds to the first token), last (seconds to the last),
completion_tokens. Fresh KV cache per prompt, as mlx_lm.generate does.
"""

import json
import sys
import time

from mlx_lm import load, stream_generate
from mlx_lm.sample_utils import make_sampler

folder, max_tokens, prompts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
model, tokenizer = load(folder)
sampler = make_sampler(temp=0.0)
for prompt in prompts:
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    start = time.perf_counter()
    first = last = None
    count = 0
    for response in stream_generate(model, tokenizer, ids, max_tokens=max_tokens, sampler=sampler):
        now = time.perf_counter()
        if response.finish_reason == "stop":
            break
        count += 1
        first = first if first is not None else now - start
        last = now - start
    print(json.dumps({"prompt_tokens": len(ids), "first": first, "last": last, "completion_tokens": count}), flush=True)
