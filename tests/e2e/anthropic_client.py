"""Headroom driven by the official `anthropic` Python client, one check per run.

Usage: anthropic_client.py BASE_URL MODEL CHECK. Exits non-zero with the reason when the check
fails; prints one JSON line of what it measured otherwise (anthropic_sdk.rs runs each check).
"""

import json
import sys
import urllib.error
import urllib.request

import anthropic
import jsonschema

import weather_tool  # beside this script

BASE_URL, MODEL, CHECK = sys.argv[1], sys.argv[2], sys.argv[3]
# Sent as the SDK sends it (x-api-key); the e2e test that sets a key on the server uses this one.
KEY = "headroom-e2e-key-0123456789abcdef"
client = anthropic.Anthropic(base_url=BASE_URL, api_key=KEY, max_retries=0, timeout=120)

WEATHER_SCHEMA = weather_tool.SCHEMA
WEATHER = {"name": weather_tool.NAME, "description": weather_tool.DESCRIPTION, "input_schema": WEATHER_SCHEMA}
QUESTION = weather_tool.QUESTION


def create():
    message = client.messages.create(
        model=MODEL,
        max_tokens=40,
        system="Answer in one sentence.",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        extra_body={"temperature": 0},
    )
    assert message.type == "message" and message.role == "assistant", message
    assert message.id.startswith("msg_"), message.id
    assert message.stop_reason in ("end_turn", "max_tokens"), message
    texts = [b.text for b in message.content if b.type == "text"]
    assert texts and texts[0].strip(), message.content
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 40, message.usage
    return {"text": texts[0], "usage": message.usage.model_dump()}


def stream():
    """The SDK's stream helper reassembles the events into the same message."""
    ask = dict(
        model=MODEL,
        max_tokens=40,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        extra_body={"temperature": 0},
    )
    pieces = []
    with client.messages.stream(**ask) as s:
        for text in s.text_stream:
            pieces.append(text)
        final = s.get_final_message()
    whole = client.messages.create(**ask)
    streamed_text = "".join(b.text for b in final.content if b.type == "text")
    assert streamed_text == "".join(pieces), (streamed_text, pieces)
    assert streamed_text == "".join(b.text for b in whole.content if b.type == "text")
    assert final.stop_reason == whole.stop_reason, (final.stop_reason, whole.stop_reason)
    assert final.usage.output_tokens == whole.usage.output_tokens, (final.usage, whole.usage)
    return {"pieces": len(pieces), "text": streamed_text}


def stop_sequence():
    """A stop sequence ends the turn before it, and the message names it, whole and streamed."""
    ask = dict(
        model=MODEL,
        max_tokens=40,
        system="Answer in one sentence.",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stop_sequences=["Paris", "never said"],
        extra_body={"temperature": 0},
    )
    whole = client.messages.create(**ask)
    assert (whole.stop_reason, whole.stop_sequence) == ("stop_sequence", "Paris"), whole
    text = "".join(b.text for b in whole.content if b.type == "text")
    assert "Paris" not in text, text
    with client.messages.stream(**ask) as s:
        final = s.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "Paris"), final
    plain = client.messages.create(**dict(ask, stop_sequences=["never said"]))
    assert (plain.stop_reason, plain.stop_sequence) in (("end_turn", None), ("max_tokens", None)), plain
    return {"text": text, "without": "".join(b.text for b in plain.content if b.type == "text")}


def forced_tool_use():
    """tool_choice naming a tool: a tool_use block whose input satisfies the schema; then the
    tool_result turn, answered in text."""
    first = client.messages.create(
        model=MODEL,
        max_tokens=120,
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        extra_body={"temperature": 0},
    )
    assert first.stop_reason == "tool_use", first
    uses = [b for b in first.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather", first.content
    assert uses[0].id.startswith("toolu_"), uses[0].id
    jsonschema.validate(uses[0].input, WEATHER_SCHEMA)
    follow = client.messages.create(
        model=MODEL,
        max_tokens=40,
        messages=QUESTION
        + [
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "18 degrees and sunny"}],
            },
        ],
        tools=[WEATHER],
        tool_choice={"type": "none"},
        extra_body={"temperature": 0},
    )
    assert follow.stop_reason in ("end_turn", "max_tokens"), follow
    text = "".join(b.text for b in follow.content if b.type == "text")
    assert text.strip() and not any(b.type == "tool_use" for b in follow.content), follow.content
    return {"input": uses[0].input, "answer": text}


def streamed_tool_use():
    """A streamed tool use: the SDK parses the input from its input_json_delta events."""
    with client.messages.stream(
        model=MODEL,
        max_tokens=120,
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        extra_body={"temperature": 0},
    ) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use", final
    uses = [b for b in final.content if b.type == "tool_use"]
    assert len(uses) == 1, final.content
    jsonschema.validate(uses[0].input, WEATHER_SCHEMA)
    return {"input": uses[0].input}


def count_tokens():
    """count_tokens agrees with what a create reports as input tokens (those read from the
    prompt cache counted apart, as Anthropic does)."""
    ask = dict(model=MODEL, messages=QUESTION, system="Be brief.")
    counted = client.messages.count_tokens(**ask)
    made = client.messages.create(max_tokens=1, **ask)
    prompt = made.usage.input_tokens + (made.usage.cache_read_input_tokens or 0)
    assert counted.input_tokens == prompt, (counted, made.usage)
    with_tools = client.messages.count_tokens(tools=[WEATHER], **ask)
    assert with_tools.input_tokens > counted.input_tokens, (with_tools, counted)
    return {"input_tokens": counted.input_tokens, "with_tools": with_tools.input_tokens}


def bad_input():
    """Mistakes answer in Anthropic's error shape; the server goes on."""
    seen = {}
    # The SDK will not send a request without max_tokens, so this one goes by hand.
    raw = urllib.request.Request(
        BASE_URL.rstrip("/") + "/v1/messages",
        data=json.dumps({"model": MODEL, "messages": QUESTION}).encode(),
        headers={"content-type": "application/json", "x-api-key": KEY},
    )
    try:
        urllib.request.urlopen(raw, timeout=60)
        raise AssertionError("a request without max_tokens was accepted")
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
        assert e.code == 400 and body["type"] == "error", body
        assert body["error"]["type"] == "invalid_request_error" and "max_tokens" in body["error"]["message"], body
        seen["missing max_tokens"] = body["error"]
    cases = {
        "bad tool schema": (
            anthropic.BadRequestError,
            dict(tools=[{"name": "f", "input_schema": {"type": "objekt"}}]),
        ),
        "tool_choice names no tool": (
            anthropic.BadRequestError,
            dict(tools=[WEATHER], tool_choice={"type": "tool", "name": "launch"}),
        ),
        "image block": (
            anthropic.BadRequestError,
            dict(messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}]}]),
        ),
        "unknown model": (anthropic.NotFoundError, dict(model="no-such-model")),
    }
    for name, (error, extra) in cases.items():
        ask = dict(model=MODEL, max_tokens=5, messages=QUESTION)
        ask.update(extra)
        try:
            client.messages.create(**ask)
        except error as e:
            assert e.body["type"] == "error" and e.body["error"]["message"], e.body
            seen[name] = e.body["error"]
            continue
        raise AssertionError(f"{name}: accepted")
    ok = client.messages.create(model=MODEL, max_tokens=5, messages=QUESTION)
    assert ok.content, ok
    return seen


CHECKS = {f.__name__: f for f in [create, stream, stop_sequence, forced_tool_use, streamed_tool_use, count_tokens, bad_input]}

if __name__ == "__main__":
    print(json.dumps(CHECKS[CHECK](), default=str))
