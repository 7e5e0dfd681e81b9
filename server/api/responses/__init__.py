"""``POST /v1/responses`` and its stored responses: OpenAI's Responses API."""
