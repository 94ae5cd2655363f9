"""LLM annotation (round 0): local causal LMs and OpenAI-compatible servers."""
