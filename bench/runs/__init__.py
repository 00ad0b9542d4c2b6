"""Runs: presets and specs, the method registry, what a method gets (context), the runner, run-folder files,
the matrix and its launchers, and the regression check."""
