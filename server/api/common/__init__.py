"""Wire pieces every API uses: strict schema bases, the error envelope, usage, ``ttc``, SSE."""
