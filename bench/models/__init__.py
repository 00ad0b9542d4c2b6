"""Models: backbones (registry, loading, tiny builds), prompt trimming, the shared rollout engine and its cache,
the vLLM backend, and an OpenAI-compatible server over a local backbone."""
