"""``POST /v1/completions``: text completions."""
