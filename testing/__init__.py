"""Test support shared by the tests, the benchmarks and the demo: the fake OpenAI-compatible server and data factories."""
