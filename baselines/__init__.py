"""Untrained methods: zero-shot LLMs, CRAG, popularity, EASE, and the Stage-1 teacher pipeline."""
