"""The LLM layer: an OpenAI-compatible client with instructor, its errors, limits, the endpoint check and the bundled local model."""
