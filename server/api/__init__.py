"""The OpenAI-compatible APIs, one package each with the same module names: ``schema``
(the request models), ``endpoint`` (the ``Endpoint`` the lifecycle drives), ``render`` (the
response bodies), ``stream`` (the streamed events); ``common`` holds what every API shares."""
