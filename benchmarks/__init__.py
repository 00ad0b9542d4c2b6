"""What `bench bench` measures (evaluator, rollout and RL-step speed) and, in `rollout_profile/`, the one-off
profiling scripts behind the engine's measured numbers."""
