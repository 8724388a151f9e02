"""Headroom's /v1/responses driven by the official `openai` Python client, one check per run.

Usage: responses_client.py BASE_URL MODEL CHECK. Exits non-zero with the reason when the check
fails; prints one JSON line of what it measured otherwise. The Rust e2e tests
(responses_sdk.rs) start the server and run each check.
"""

import json
import sys

import jsonschema
import openai
import pydantic

import weather_tool  # beside this script

BASE_URL, MODEL, CHECK = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=BASE_URL, api_key="headroom", max_retries=0, timeout=120)

WEATHER_SCHEMA = weather_tool.SCHEMA
# The Responses shape: flat, no nested "function".
WEATHER = {
    "type": "function",
    "name": weather_tool.NAME,
    "description": weather_tool.DESCRIPTION,
    "parameters": WEATHER_SCHEMA,
    "strict": True,
}
GREEDY = dict(model=MODEL, temperature=0)


def plain():
    """A string input with instructions, whole; the same request streamed, as raw events and
    through the SDK's accumulator, says the same."""
    ask = dict(
        GREEDY,
        input="What is the capital of France?",
        instructions="Answer in one short sentence.",
        max_output_tokens=60,
    )
    whole = client.responses.create(**ask)
    assert whole.object == "response" and whole.id.startswith("resp_"), whole
    # Tiny models may ramble on to the limit: then the response says it is incomplete.
    cut = whole.usage.output_tokens == ask["max_output_tokens"]
    assert whole.status == ("incomplete" if cut else "completed"), whole
    assert whole.output_text.strip(), whole
    assert whole.instructions == ask["instructions"] and whole.store is False, whole
    usage = whole.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0, usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens, usage

    raw = list(client.responses.create(**ask, stream=True))
    types = [event.type for event in raw]
    assert [event.sequence_number for event in raw] == list(range(len(raw))), types
    assert types[:2] == ["response.created", "response.in_progress"], types
    assert types[-1] == ("response.incomplete" if cut else "response.completed"), types
    assert {event.response.id for event in raw if hasattr(event, "response")} == {raw[0].response.id}
    deltas = "".join(event.delta for event in raw if event.type == "response.output_text.delta")
    assert deltas == whole.output_text, (deltas, whole.output_text)

    if not cut:
        # The SDK's accumulator insists on response.completed.
        with client.responses.stream(**ask) as stream:
            for _ in stream:
                pass
            final = stream.get_final_response()
        assert final.output_text == whole.output_text, (final.output_text, whole.output_text)
    return {"text": whole.output_text, "usage": usage.model_dump(), "events": len(raw)}


def incomplete():
    """max_output_tokens cuts the answer off: status incomplete, and why, whole and streamed."""
    ask = dict(GREEDY, input="Write a long story about a dragon.", max_output_tokens=5)
    whole = client.responses.create(**ask)
    assert whole.status == "incomplete", whole
    assert whole.incomplete_details.reason == "max_output_tokens", whole
    assert whole.usage.output_tokens == 5, whole.usage
    last = list(client.responses.create(**ask, stream=True))[-1]
    assert last.type == "response.incomplete", last
    assert last.response.output[0].content[0].text == whole.output_text
    return {"text": whole.output_text}


def function_call():
    """A required function tool: a call whose arguments satisfy the schema, whole and streamed
    (the SDK reassembles the argument deltas), then its output goes back as an input item."""
    question = weather_tool.QUESTION
    ask = dict(
        GREEDY, input=question, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, max_output_tokens=200
    )
    whole = client.responses.create(**ask)
    calls = [item for item in whole.output if item.type == "function_call"]
    assert len(calls) >= 1 and calls[0].name == "get_weather", whole.output
    call = calls[0]
    arguments = json.loads(call.arguments)
    jsonschema.validate(arguments, WEATHER_SCHEMA)
    assert call.call_id and call.id.startswith("fc_"), call

    with client.responses.stream(**ask) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds, kinds
    streamed = [item for item in final.output if item.type == "function_call"]
    assert streamed[0].arguments == call.arguments, (streamed[0].arguments, call.arguments)

    answer = dict(GREEDY, tools=[WEATHER], tool_choice="none", max_output_tokens=40)
    history = [
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees and sunny"},
    ]
    follow_up = client.responses.create(**answer, input=question + history)
    assert follow_up.status in ("completed", "incomplete"), follow_up
    assert not [item for item in follow_up.output if item.type == "function_call"], follow_up.output
    # The call and its output are in the prompt the model answered.
    bare = client.responses.create(**dict(answer, max_output_tokens=1), input=question)
    assert follow_up.usage.input_tokens > bare.usage.input_tokens + 10, (follow_up.usage, bare.usage)
    return {"arguments": arguments, "answer": follow_up.output_text}


class City(pydantic.BaseModel):
    name: str
    country: str


def json_schema():
    """text.format with a JSON schema, and the SDK's own `responses.parse` into a pydantic
    model (which sends the model's schema as text.format)."""
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 30}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    whole = client.responses.create(
        **GREEDY,
        input="Describe a person named Ann who is 30.",
        text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}},
        max_output_tokens=80,
    )
    person = json.loads(whole.output_text)
    jsonschema.validate(person, schema)
    parsed = client.responses.parse(
        **GREEDY, input="Name a city in France.", text_format=City, max_output_tokens=80
    )
    city = parsed.output_parsed
    assert isinstance(city, City), parsed
    return {"person": person, "city": city.model_dump()}


def reasoning():
    """A model that thinks: a reasoning item with the thinking, before the message, whole and
    streamed as reasoning_text deltas."""
    ask = dict(GREEDY, input="Is 17 a prime number?", max_output_tokens=60)
    whole = client.responses.create(**ask)
    kinds = [item.type for item in whole.output]
    assert kinds[0] == "reasoning", kinds
    thought = whole.output[0].content[0].text
    assert thought, whole.output[0]
    raw = list(client.responses.create(**ask, stream=True))
    streamed = "".join(event.delta for event in raw if event.type == "response.reasoning_text.delta")
    assert streamed == thought, (streamed, thought)
    return {"reasoning_chars": len(thought), "items": kinds}


def bad_input():
    """What cannot be served is a 4xx in OpenAI's shape naming the problem, and the server
    answers the next request."""
    seen = {}

    def refused(name, call, error=openai.BadRequestError):
        try:
            call()
        except error as e:
            seen[name] = {"status": e.status_code, "code": (e.body or {}).get("code"), "message": (e.body or {}).get("message")}
            return
        raise AssertionError(f"{name} was accepted")

    refused("previous_response_id", lambda: client.responses.create(model=MODEL, input="x", previous_response_id="resp_1"))
    refused("web_search tool", lambda: client.responses.create(model=MODEL, input="x", tools=[{"type": "web_search"}]))
    refused(
        "bad schema",
        lambda: client.responses.create(
            model=MODEL, input="x", text={"format": {"type": "json_schema", "name": "s", "schema": {"type": "nonsense"}}}
        ),
    )
    refused("image input", lambda: client.responses.create(
        model=MODEL, input=[{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]
    ))
    refused("unknown item type", lambda: client.responses.create(
        model=MODEL, input=[{"type": "computer_call_output", "call_id": "c", "output": {}}]
    ))
    refused("unknown model", lambda: client.responses.create(model="no-such-model", input="x"), openai.NotFoundError)
    refused("retrieve", lambda: client.responses.retrieve("resp_123"), openai.NotFoundError)
    after = client.responses.create(**GREEDY, input="Say yes.", max_output_tokens=5)
    assert after.output_text, after
    return seen


CHECKS = {f.__name__: f for f in [plain, incomplete, function_call, json_schema, reasoning, bad_input]}

if __name__ == "__main__":
    print(json.dumps(CHECKS[CHECK](), default=str))
