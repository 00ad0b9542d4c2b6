"""Trained methods: SFT, GRPO, GSPO and Rank-GRPO (one module each)."""
