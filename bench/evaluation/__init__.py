"""Evaluation: the one parser, the one matcher and evaluator, the metrics, and the evaluator speed benchmark."""
