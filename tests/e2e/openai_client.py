"""Headroom driven by the official `openai` Python client, one check per run.

Usage: openai_client.py BASE_URL MODEL CHECK [CHAT_MODEL]. Exits non-zero with the reason when the check
fails; prints one JSON line of what it measured otherwise. The Rust e2e tests (openai_sdk.rs) start
the server and run each check; the client and `jsonschema` come from PyPI (scripts/lib.sh).
"""

import json
import math
import sys

import jsonschema
import openai

import weather_tool  # beside this script

BASE_URL, MODEL, CHECK = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=BASE_URL, api_key="headroom", max_retries=0, timeout=120)

WEATHER_SCHEMA = weather_tool.SCHEMA
WEATHER = {
    "type": "function",
    "function": {
        "name": weather_tool.NAME,
        "description": weather_tool.DESCRIPTION,
        "parameters": WEATHER_SCHEMA,
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 40}},
            "required": ["zone"],
        },
    },
}
QUESTION = weather_tool.QUESTION


def forced_call():
    """A named tool_choice: one call whose arguments satisfy the schema, then the follow-up."""
    first = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        max_tokens=120,
        temperature=0,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1, choice.message
    call = calls[0]
    assert call.type == "function" and call.function.name == "get_weather", call
    assert call.id.startswith("call_"), call.id
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER_SCHEMA)

    # The tool's answer goes back; the model answers in prose with tools still offered.
    follow = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION
        + [
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
        ],
        tools=[WEATHER, TIME],
        tool_choice="none",
        max_tokens=60,
        temperature=0,
    )
    answer = follow.choices[0]
    assert answer.finish_reason in ("stop", "length"), answer
    assert answer.message.tool_calls is None, answer.message
    assert answer.message.content and answer.message.content.strip(), answer.message
    return {
        "arguments": arguments,
        "prompt_tokens": first.usage.prompt_tokens,
        "follow_up_prompt_tokens": follow.usage.prompt_tokens,
        "answer": answer.message.content,
    }


def required_parallel():
    """tool_choice required with parallel calls allowed: every call is a valid one."""
    response = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris and the time in Tokyo?"}],
        tools=[WEATHER, TIME],
        tool_choice="required",
        max_tokens=200,
        temperature=0,
    )
    choice = response.choices[0]
    calls = choice.message.tool_calls or []
    # A small model may go on listing calls until max_tokens: then the cut answer is content.
    if choice.finish_reason == "length" and not calls:
        return {"calls": 0, "cut": True}
    assert choice.finish_reason == "tool_calls" and calls, choice
    schemas = {"get_weather": WEATHER_SCHEMA, "get_time": TIME["function"]["parameters"]}
    for call in calls:
        jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])
    assert len({c.id for c in calls}) == len(calls), "call ids repeat"
    return {"calls": len(calls), "names": [c.function.name for c in calls]}


def streamed_call():
    """A streamed call, reassembled from its deltas the way clients do."""
    stream = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=120,
        temperature=0,
        stream=True,
    )
    calls, finish, chunks = {}, None, 0
    for chunk in stream:
        chunks += 1
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        for part in delta.tool_calls or []:
            call = calls.setdefault(part.index, {"id": None, "name": "", "arguments": ""})
            if part.id:
                call["id"] = part.id
            if part.function and part.function.name:
                call["name"] += part.function.name
            if part.function and part.function.arguments:
                call["arguments"] += part.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls", finish
    assert list(calls) == [0], calls
    call = calls[0]
    assert call["id"] and call["name"] == "get_weather", call
    arguments = json.loads(call["arguments"])
    jsonschema.validate(arguments, WEATHER_SCHEMA)
    return {"chunks": chunks, "arguments": arguments}


def auto_choice():
    """tool_choice auto: a call or an answer, either well formed."""
    response = client.chat.completions.create(
        model=MODEL, messages=QUESTION, tools=[WEATHER], max_tokens=120, temperature=0
    )
    choice = response.choices[0]
    if choice.message.tool_calls:
        assert choice.finish_reason == "tool_calls", choice
        for call in choice.message.tool_calls:
            jsonschema.validate(json.loads(call.function.arguments), WEATHER_SCHEMA)
        return {"called": True}
    assert choice.finish_reason in ("stop", "length"), choice
    assert isinstance(choice.message.content, str), choice.message
    return {"called": False, "content": choice.message.content}


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 30},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "languages": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
    },
    "required": ["name", "age", "languages"],
    "additionalProperties": False,
}


def json_schema():
    """response_format json_schema: the answer validates against the schema."""
    response = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe a French programmer as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON, "strict": True},
        },
        max_tokens=150,
        temperature=0,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "stop", choice
    person = json.loads(choice.message.content)
    jsonschema.validate(person, PERSON)
    # Sampled, too: the grammar then stands beside the sampler chain, not the greedy pick.
    for seed in (1, 2, 3):
        sampled = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Describe a French programmer as JSON."}],
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
            max_tokens=150,
            temperature=0.8,
            seed=seed,
        )
        assert sampled.choices[0].finish_reason == "stop", sampled.choices[0]
        jsonschema.validate(json.loads(sampled.choices[0].message.content), PERSON)
    return {"person": person}


def json_object():
    response = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "List three colours as JSON."}],
        response_format={"type": "json_object"},
        max_tokens=400,
        temperature=0,
    )
    assert response.choices[0].finish_reason == "stop", response.choices[0]
    value = json.loads(response.choices[0].message.content)
    assert isinstance(value, dict), value
    return {"object": value}


def logprobs():
    """Greedy logprobs: each token is its list's most likely, probabilities add up sensibly,
    and the tokens spell the answer."""
    response = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        logprobs=True,
        top_logprobs=5,
        max_tokens=20,
        temperature=0,
    )
    choice = response.choices[0]
    tokens = choice.logprobs.content
    assert len(tokens) == response.usage.completion_tokens, (len(tokens), response.usage)
    assert "".join(t.token for t in tokens) == choice.message.content
    worst_mass = 1.0
    for t in tokens:
        assert t.logprob <= 0, t
        assert len(t.top_logprobs) == 5, t
        assert t.top_logprobs[0].token == t.token, t
        assert math.isclose(t.top_logprobs[0].logprob, t.logprob, abs_tol=1e-4), t
        top = [alt.logprob for alt in t.top_logprobs]
        assert top == sorted(top, reverse=True), top
        mass = sum(math.exp(lp) for lp in top)
        assert mass <= 1.0001, mass
        worst_mass = min(worst_mass, mass)
        assert bytes(t.bytes).decode("utf-8", "replace") == t.token or "\ufffd" in t.token
    # Streamed: the same tokens, spread over the chunks.
    streamed = []
    for chunk in client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        logprobs=True,
        top_logprobs=2,
        max_tokens=20,
        temperature=0,
        stream=True,
    ):
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            streamed += [t.token for t in chunk.choices[0].logprobs.content]
    assert streamed == [t.token for t in tokens], (streamed, [t.token for t in tokens])
    # Text completions' legacy shape: parallel lists and text offsets.
    text = client.completions.create(
        model=MODEL, prompt="1, 2, 3, 4,", logprobs=3, max_tokens=8, temperature=0
    ).choices[0]
    lp = text.logprobs
    assert "".join(lp.tokens) == text.text, (lp.tokens, text.text)
    assert len(lp.token_logprobs) == len(lp.tokens) == len(lp.top_logprobs) == len(lp.text_offset)
    assert all(len(alts) == 3 for alts in lp.top_logprobs), lp.top_logprobs
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset), lp.text_offset
    return {
        "tokens": len(tokens),
        "mean_logprob": sum(t.logprob for t in tokens) / len(tokens),
        "least_top5_mass": worst_mass,
    }


def bad_input():
    """Each mistake is a 400 naming it, in OpenAI's shape, and the server goes on serving."""
    cases = {
        "malformed tool schema": dict(
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}]
        ),
        "not JSON Schema": dict(
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"properties": "x"}}}]
        ),
        "tool_choice names no tool": dict(
            tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "launch"}}
        ),
        "top_logprobs 99": dict(logprobs=True, top_logprobs=99),
        "bad response schema": dict(
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}
        ),
    }
    seen = {}
    for name, extra in cases.items():
        try:
            client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=5, **extra)
        except openai.BadRequestError as e:
            body = e.body or {}
            seen[name] = {"code": body.get("code"), "message": body.get("message")}
            assert body.get("message"), (name, e)
            continue
        raise AssertionError(f"{name}: accepted")
    # 10 MB of logit_bias is beyond the body limit: refused before it is read, in the same shape.
    huge = {str(i): 1 for i in range(1_000_000)}
    try:
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=5, logit_bias=huge)
        raise AssertionError("10 MB of logit_bias accepted")
    except openai.APIStatusError as e:
        assert e.status_code == 413, e
        seen["10 MB logit_bias"] = {"status": e.status_code, "code": (e.body or {}).get("code")}
    # Under the limit but more entries than allowed: a 400 naming the field.
    many = {str(i): 1 for i in range(5000)}
    try:
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=5, logit_bias=many)
        raise AssertionError("5000 logit_bias entries accepted")
    except openai.BadRequestError as e:
        seen["5000 logit_bias entries"] = {"code": (e.body or {}).get("code")}
    ok = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=5)
    assert ok.choices[0].message.content is not None
    return seen


def embeddings():
    """A paraphrase ranks above an unrelated sentence; base64 (the client's default) and float
    give the same vectors; a chat model or a shortened size is a clear 400."""
    sentences = [
        "The cat sits on the mat.",
        "A cat is sitting on a mat.",
        "Stock markets fell sharply today.",
    ]
    packed = client.embeddings.create(model=MODEL, input=sentences)
    plain = client.embeddings.create(model=MODEL, input=sentences, encoding_format="float")
    vectors = [d.embedding for d in plain.data]
    assert [d.index for d in plain.data] == [0, 1, 2]
    for a, b in zip(packed.data, plain.data):
        assert max(abs(x - y) for x, y in zip(a.embedding, b.embedding)) < 1e-6
    cos = lambda a, b: sum(x * y for x, y in zip(a, b))
    norms = [math.sqrt(cos(v, v)) for v in vectors]
    assert all(abs(n - 1) < 1e-4 for n in norms), norms
    paraphrase, unrelated = cos(vectors[0], vectors[1]), cos(vectors[0], vectors[2])
    assert paraphrase > unrelated + 0.3, (paraphrase, unrelated)
    assert plain.usage.prompt_tokens > len(sentences), plain.usage
    # Token input: the same sentence as ids ([CLS] hello world [SEP] in BERT's vocabulary)
    # gives the same vector.
    one = client.embeddings.create(model=MODEL, input="hello world", encoding_format="float")
    ids = client.embeddings.create(model=MODEL, input=[[101, 7592, 2088, 102]], encoding_format="float")
    assert one.usage.prompt_tokens == 4, one.usage
    assert max(abs(x - y) for x, y in zip(one.data[0].embedding, ids.data[0].embedding)) < 1e-5
    refused = {}
    for name, call in {
        "chat model": lambda: client.embeddings.create(model=CHAT_MODEL, input="hi"),
        "dimensions": lambda: client.embeddings.create(model=MODEL, input="hi", dimensions=8),
        "empty input": lambda: client.embeddings.create(model=MODEL, input=[]),
    }.items():
        try:
            call()
        except openai.BadRequestError as e:
            refused[name] = (e.body or {}).get("code")
            continue
        raise AssertionError(f"{name}: accepted")
    return {
        "dimension": len(vectors[0]),
        "paraphrase": paraphrase,
        "unrelated": unrelated,
        "prompt_tokens": plain.usage.prompt_tokens,
        "hello_world_tokens": one.usage.prompt_tokens,
        "refused": refused,
    }


def extra(obj, name):
    """A field the typed client does not declare (llama-server's `reasoning_content`)."""
    return getattr(obj, name, None) or (obj.model_extra or {}).get(name)


def reasoning():
    """A template that opens <think>: the thinking goes to reasoning_content, whole and
    streamed, and reasoning_format none keeps the raw text, which the split adds up to."""
    ask = dict(
        model=MODEL,
        messages=[{"role": "user", "content": "Is 17 a prime number?"}],
        max_tokens=60,
        temperature=0,
    )
    raw = client.chat.completions.create(**ask, extra_body={"reasoning_format": "none"})
    raw_text = raw.choices[0].message.content
    assert extra(raw.choices[0].message, "reasoning_content") is None
    split = client.chat.completions.create(**ask)
    thought = extra(split.choices[0].message, "reasoning_content") or ""
    answer = split.choices[0].message.content or ""
    if "</think>" in raw_text:
        before, after = raw_text.split("</think>", 1)
        assert (thought, answer) == (before, after.lstrip()), (thought, answer, raw_text)
    else:
        assert (thought, answer) == (raw_text, ""), (thought, answer, raw_text)
    assert thought, "no reasoning at all"
    streamed_thought, streamed_answer = "", ""
    for chunk in client.chat.completions.create(**ask, stream=True):
        if chunk.choices:
            delta = chunk.choices[0].delta
            streamed_thought += extra(delta, "reasoning_content") or ""
            streamed_answer += delta.content or ""
    assert (streamed_thought, streamed_answer) == (thought, answer)
    try:
        client.chat.completions.create(**ask, extra_body={"reasoning_format": "sometimes"})
        raise AssertionError("reasoning_format sometimes accepted")
    except openai.BadRequestError as e:
        assert (e.body or {}).get("code") == "invalid_reasoning_format", e.body
    return {"reasoning_chars": len(thought), "answer_chars": len(answer), "closed": "</think>" in raw_text}


CHAT_MODEL = sys.argv[4] if len(sys.argv) > 4 else None

CHECKS = {
    f.__name__: f
    for f in [
        forced_call,
        required_parallel,
        streamed_call,
        auto_choice,
        json_schema,
        json_object,
        logprobs,
        bad_input,
        embeddings,
        reasoning,
    ]
}

if __name__ == "__main__":
    print(json.dumps(CHECKS[CHECK](), default=str))
