"""The recommendation instruction shared by every dataset we build (our own wording).

The processed Reddit-v2 prompts carry the authors' instruction; ours asks for the same output format: 20 movies, one
`Title (Year)` per line, nothing else, followed by the conversation so far.
"""

N_RECOMMENDATIONS = 20

INSTRUCTION = (
    "You are a movie recommender. Read the conversation below and recommend {n} movies the user would enjoy "
    "next. Reply with exactly {n} lines, one movie per line, written as Title (Year), and nothing else."
)


def recommendation_prompt(conversation: str, n: int = N_RECOMMENDATIONS) -> list[dict[str, str]]:
    """One user chat message: the instruction, a blank line, then the conversation text."""
    return [{"role": "user", "content": f"{INSTRUCTION.format(n=n)}\n\n{conversation}"}]
