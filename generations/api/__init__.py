"""The HTTP API: OpenAI-compatible (``/v1``), Gemini-compatible (``/v1beta``) and the
native jobs API (``/api/v1``), all on the same jobs, quotas and ledger as the studio."""
