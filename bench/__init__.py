"""bench: a benchmark suite for aligning LLM-based conversational recommender systems with RL."""

__version__ = "0.1.0"
