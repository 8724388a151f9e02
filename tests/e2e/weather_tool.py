"""The tool every client check calls: one schema, each dialect's script wraps it in its own
shape (OpenAI's nested function, the Responses API's flat one, Anthropic's input_schema)."""

NAME = "get_weather"
DESCRIPTION = "The current weather in a city"
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
