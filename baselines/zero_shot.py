"""Zero-shot: the backbone prompted as is, with greedy decoding, through the shared rollout engine.

Local backbones (tiny, registered hub models, local paths) generate through `RunContext.generate`; models named
`openai:<model>` are answered by an OpenAI-compatible endpoint (`bench.models.endpoint`).
"""

from bench.runs.context import MethodOutput, RunContext

ENDPOINT_PREFIX = "openai:"


def predict(ctx: RunContext) -> MethodOutput:
    """Greedy completions for every evaluation example (one generation per distinct prompt)."""
    examples = ctx.eval_examples()
    if ctx.spec.model.startswith(ENDPOINT_PREFIX):
        from bench.models.endpoint import endpoint_predictions

        return endpoint_predictions(ctx, examples)
    backbone = ctx.load_backbone()
    predictions = ctx.generate(backbone, examples)
    return MethodOutput(predictions, {"backbone_fingerprint": backbone.fingerprint})
