"""Headroom driven by the official `ollama` Python client, one check per run.

Usage: ollama_client.py BASE_URL MODEL CHECK [EMBEDDING_MODEL]. Exits non-zero with the reason
when the check fails; prints one JSON line of what it measured otherwise (ollama_sdk.rs runs
each check).
"""

import json
import sys

import ollama

BASE_URL, MODEL, CHECK = sys.argv[1], sys.argv[2], sys.argv[3]
client = ollama.Client(host=BASE_URL, timeout=120)
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0, "num_predict": 30}


def chat():
    """Whole and streamed (the client's NDJSON) agree, and the model is named as Ollama does."""
    whole = client.chat(model=MODEL, messages=QUESTION, options=GREEDY, stream=False)
    assert whole.done and whole.done_reason in ("stop", "length"), whole
    assert whole.message.role == "assistant" and whole.message.content, whole
    assert whole.prompt_eval_count > 0 and 0 < whole.eval_count <= 30, whole
    parts = list(client.chat(model=MODEL + ":latest", messages=QUESTION, options=GREEDY, stream=True))
    assert parts[-1].done and not any(p.done for p in parts[:-1]), [p.done for p in parts]
    streamed = "".join(p.message.content for p in parts)
    assert streamed == whole.message.content, (streamed, whole.message.content)
    return {"lines": len(parts), "text": streamed}


def generate():
    answer = client.generate(model=MODEL, prompt="What is the capital of France?", options=GREEDY)
    assert answer.done and answer.response, answer
    raw = client.generate(model=MODEL, prompt="1, 2, 3, 4,", raw=True, options={"temperature": 0, "num_predict": 6})
    assert raw.response.strip().startswith("5"), raw.response
    return {"response": answer.response, "raw": raw.response}


def tools_and_format():
    """A tool the model may call, and format as a JSON Schema."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    formatted = client.chat(model=MODEL, messages=QUESTION, format=schema, options={"temperature": 0, "num_predict": 60})
    value = json.loads(formatted.message.content)
    assert isinstance(value.get("city"), str), value
    weather = {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather in a city", "parameters": schema},
    }
    called = client.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[weather],
        options={"temperature": 0, "num_predict": 80},
    )
    calls = called.message.tool_calls or []
    for call in calls:
        assert call.function.name == "get_weather" and isinstance(call.function.arguments, dict), call
    return {"format": value, "calls": [c.function.arguments for c in calls], "content": called.message.content}


def list_ps_and_keep_alive():
    """list names every model; ps shows the measured size; keep_alive 0 unloads."""
    names = [m.model for m in client.list().models]
    assert MODEL + ":latest" in names, names
    client.generate(model=MODEL, prompt="")  # loads
    loaded = {m.model: m for m in client.ps().models}
    assert MODEL + ":latest" in loaded, loaded
    size = loaded[MODEL + ":latest"].size
    assert size > 10_000_000, size
    shown = client.show(MODEL)
    assert shown.modelfile.startswith("FROM "), shown
    client.generate(model=MODEL, prompt="", keep_alive=0)  # unloads
    after = [m.model for m in client.ps().models]
    assert MODEL + ":latest" not in after, after
    try:
        client.push("llama3")
        raise AssertionError("push accepted")
    except ollama.ResponseError as e:
        assert e.status_code == 501 and "does not push" in e.error, e
    try:
        client.chat(model="no-such-model", messages=QUESTION)
        raise AssertionError("unknown model accepted")
    except ollama.ResponseError as e:
        assert e.status_code == 404, e
    return {"models": names, "ps_size": size}


def embed():
    embedder = sys.argv[4]
    result = client.embed(model=embedder, input=["The cat sits on the mat.", "A cat is sitting on a mat.", "Stock markets fell sharply today."])
    v = result.embeddings
    cos = lambda a, b: sum(x * y for x, y in zip(a, b))
    assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.3, (cos(v[0], v[1]), cos(v[0], v[2]))
    old = client.embeddings(model=embedder, prompt="The cat sits on the mat.")
    assert max(abs(x - y) for x, y in zip(old.embedding, v[0])) < 1e-5
    return {"paraphrase": cos(v[0], v[1]), "unrelated": cos(v[0], v[2])}


def pull():
    """MODEL is a Hugging Face name (hf.co/org/repo:quant): pulled with progress, then listed and
    chatted with under that name; pulled again at once; other names refused in Ollama's shape."""
    lines = list(client.pull(MODEL, stream=True))
    statuses = [line.status for line in lines]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success", statuses
    progress = [(line.completed, line.total) for line in lines if line.total]
    assert progress and all(a[0] <= b[0] for a, b in zip(progress, progress[1:])), progress
    names = [m.model for m in client.list().models]
    assert MODEL in names, names
    answer = client.chat(model=MODEL, messages=QUESTION, options=GREEDY)
    assert answer.message.content, answer
    again = client.pull(MODEL)
    assert again.status == "success", again
    refused = {}
    for name in ["llama3.2:3b", MODEL.rsplit(":", 1)[0] + ":Q9_9"]:
        try:
            client.pull(name)
        except ollama.ResponseError as e:
            refused[name] = (e.status_code, e.error)
        else:
            raise AssertionError(f"{name} was pulled")
    return {"lines": len(lines), "progress_lines": len(progress), "listed": MODEL, "answer": answer.message.content, "refused": refused}


CHECKS = {f.__name__: f for f in [chat, generate, tools_and_format, list_ps_and_keep_alive, embed, pull]}

if __name__ == "__main__":
    print(json.dumps(CHECKS[CHECK](), default=str))
