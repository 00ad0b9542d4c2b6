"""Rank-GRPO math against hand-computed values (algorithms/rank_grpo.py).

Expected numbers are written out literally, worked by hand in the comments; nothing is recomputed with the formula
under test.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from algorithms.rank_grpo import (
    eos_mask,
    items_emitted,
    length_shaping,
    missing_rank_credit,
    newline_token_ids,
    rank_advantage_per_token,
    rank_advantages,
    rank_grpo_token_loss,
    rank_log_ratio,
    rank_rewards,
    segment_ranks,
    whitespace_token_ids,
)
from bench.evaluation.parsing import split_lines

# A fake vocabulary: id -> decoded text ("" for the special tokens <pad> and <eos>, as with skip_special_tokens).
VOCAB = ["", "", "\n", "\n\n", " ", "A", "B", ").\n", "C", "D", " \n"]
PAD, EOS, NL, NL2, SP, A, B, CLOSE_PAREN_NL, C, D, SP_NL = range(len(VOCAB))
NEWLINES = [NL, NL2, CLOSE_PAREN_NL, SP_NL]  # text contains a line break
TEXTLESS = [PAD, EOS, NL, NL2, SP, SP_NL]  # text is empty or whitespace only


def _batch(*rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (ids, mask) from rows of token ids."""
    width = max(len(row) for row in rows)
    ids = torch.tensor([row + [PAD] * (width - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    return ids, mask


def _segment(ids: torch.Tensor, mask: torch.Tensor, max_ranks: int, eos: bool = False) -> list[list[int]]:
    return segment_ranks(ids, mask, NEWLINES, max_ranks, TEXTLESS, eos_token_id=EOS if eos else None).tolist()


# ---------------------------------------------------------------------------------------------------- rank_rewards


def test_exp_inf_reward_is_the_hit_vector():
    hits = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    assert rank_rewards(hits, "exp_inf").tolist() == [[1.0, 0.0, 1.0, 0.0]]


def test_log_decay_reward_worked_example_n4():
    # Discounts 1/log2(k+1) for k = 1..4: 1, 0.6309298 (= ln2/ln3), 0.5, 0.4306766 (= ln2/ln5).
    # Row 1, hits 1 0 1 0: gains 1, 0, 0.5, 0 -> suffix sums r4 = 0, r3 = 0.5, r2 = 0.5, r1 = 1.5.
    # Row 2, hits 0 1 1 1: gains 0, 0.6309298, 0.5, 0.4306766 -> r4 = 0.4306766, r3 = 0.9306766,
    #   r2 = 1.5616064, r1 = 1.5616064 (rank 1 missed, so it adds nothing).
    hits = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]])
    expected = torch.tensor([[1.5, 0.5, 0.5, 0.0], [1.5616064, 1.5616064, 0.9306766, 0.4306766]])
    torch.testing.assert_close(rank_rewards(hits, "log_decay"), expected, atol=1e-6, rtol=0)


def test_unknown_rank_reward_is_a_value_error():
    with pytest.raises(ValueError, match="exp_inf"):
        rank_rewards(torch.zeros(1, 3), "exp_decay")


# ------------------------------------------------------------------------------------------------- rank_advantages


def test_rank_advantages_group_of_three():
    # Rank 1 rewards 1, 0, 0: mean 1/3, deviations 2/3, -1/3, -1/3, unbiased variance (4/9 + 1/9 + 1/9) / 2 = 1/3,
    #   std 0.5773503 (+1e-4 = 0.5774503) -> 1.1545006, -0.5772503, -0.5772503.
    # Rank 2 rewards 0, 1, 1: the mirror image -> -1.1545006, 0.5772503, 0.5772503.
    # Rank 3 rewards 1, 1, 1: identical -> 0, 0, 0.
    rewards = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    expected = torch.tensor([[1.1545006, -1.1545006, 0.0], [-0.5772503, 0.5772503, 0.0], [-0.5772503, 0.5772503, 0.0]])
    torch.testing.assert_close(rank_advantages(rewards, group_size=3), expected, atol=1e-6, rtol=0)


def test_rank_advantages_normalise_each_group_separately():
    # Group 1 (rows 1-2), one rank, rewards 3 and 1: mean 2, unbiased std sqrt((1 + 1) / 1) = 1.4142136,
    #   -> +-1 / 1.4143136 = +-0.7070568.  Group 2 (rows 3-4), rewards 5 and 5: identical -> 0, 0.
    rewards = torch.tensor([[3.0], [1.0], [5.0], [5.0]])
    expected = torch.tensor([[0.7070568], [-0.7070568], [0.0], [0.0]])
    torch.testing.assert_close(rank_advantages(rewards, group_size=2), expected, atol=1e-6, rtol=0)
    # Without scaling only the group mean is removed: 3 - 2, 1 - 2, 5 - 5, 5 - 5.
    assert rank_advantages(rewards, group_size=2, scale=False).tolist() == [[1.0], [-1.0], [0.0], [0.0]]


def test_identical_rewards_give_zero_advantages():
    rewards = torch.tensor([[0.5, 1.0, 0.0]] * 3)
    assert rank_advantages(rewards, group_size=3).tolist() == [[0.0, 0.0, 0.0]] * 3


def test_rank_advantages_reject_partial_groups():
    with pytest.raises(ValueError, match="groups of 2"):
        rank_advantages(torch.zeros(3, 2), group_size=2)


# --------------------------------------------------------------------------------------------------- segmentation


def test_segmentation_blank_lines_and_token_with_newline_and_text():
    # Text "A\n\nB).\n \nC\n": lines "A", "", "B).", " ", "C" -> items A, "B).", C.
    # A(0) \n(0: closes A) \n(0: closes a blank line, stays with A) B(1) ").\n"(1: text + closes B's line)
    # " "(1: blank) \n(1: closes the blank line " ") C(2) \n(2) <eos>(2: blank after C; -1 when EOS ids are given).
    ids, mask = _batch([A, NL, NL, B, CLOSE_PAREN_NL, SP, NL, C, NL, EOS])
    assert _segment(ids, mask, max_ranks=5) == [[0, 0, 0, 1, 1, 1, 1, 2, 2, 2]]
    assert _segment(ids, mask, max_ranks=5, eos=True) == [[0, 0, 0, 1, 1, 1, 1, 2, 2, -1]]


def test_segmentation_chatter_line_is_an_item():
    # "D D\nA\n": the chatter line "D D" is a non-blank line, so parse_lines gives it rank 1 (parsed as None).
    ids, mask = _batch([D, SP, D, NL, A, NL])
    assert _segment(ids, mask, max_ranks=5) == [[0, 0, 0, 0, 1, 1]]


def test_segmentation_leading_blanks_belong_to_no_item():
    # " \n\nA\n": a whitespace token and a blank line before the first item.
    ids, mask = _batch([SP, NL, NL2, A, NL])
    assert _segment(ids, mask, max_ranks=5) == [[-1, -1, -1, 0, 0]]


def test_segmentation_overflow_and_padding():
    # Row 1 "A\nB\nC\nD\n" with max_ranks 2: C and D are items 3 and 4 -> overflow id 2.
    # Row 2 "A\n" then padding -> -1.  Row 3: a whitespace token that carries a newline (" \n") after A.
    ids, mask = _batch([A, NL, B, NL, C, NL, D, NL], [A, NL], [A, SP_NL, B])
    assert _segment(ids, mask, max_ranks=2) == [
        [0, 0, 1, 1, 2, 2, 2, 2],
        [0, 0, -1, -1, -1, -1, -1, -1],
        [0, 0, 1, -1, -1, -1, -1, -1],
    ]


def test_segmentation_without_whitespace_ids_treats_only_newline_tokens_as_blank():
    # Without whitespace ids a space token counts as text, so " " after a newline starts an item.
    ids, mask = _batch([A, NL, SP, NL, B])
    assert segment_ranks(ids, mask, [NL], max_ranks=5).tolist() == [[0, 0, 1, 1, 2]]


def _item_texts(ids: list[int], rank_ids: list[int]) -> list[str]:
    """The stripped text of each item, from the tokens segment_ranks assigned to it."""
    items: dict[int, str] = {}
    for token, rank in zip(ids, rank_ids, strict=True):
        if rank >= 0:
            items[rank] = items.get(rank, "") + VOCAB[token]
    return [items[rank].strip() for rank in sorted(items)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(range(len(VOCAB))), max_size=30))
def test_segmentation_matches_parse_lines(tokens: list[int]):
    """The k-th rank of the tokens is the k-th non-blank line of the decoded text (bench.evaluation.parsing.split_lines)."""
    ids, mask = _batch(tokens + [EOS])
    rank_ids = _segment(ids, mask, max_ranks=1000)[0]
    text = "".join(VOCAB[token] for token in tokens)
    assert _item_texts(tokens + [EOS], rank_ids) == [line.strip() for line in split_lines(text)]


def test_vocabulary_scans_find_newline_and_whitespace_tokens():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "\n": 2, "\n\n": 3, " ": 4, "A": 5, ").\n": 6, "\r\n": 7, "\t \n": 8}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<pad>")
    assert newline_token_ids(tokenizer) == [2, 3, 6, 7, 8]
    assert whitespace_token_ids(tokenizer) == [0, 1, 2, 3, 4, 7, 8]


# ------------------------------------------------------------------------------------------ ratios and advantages


def test_rank_log_ratio_means_over_each_rank():
    # Token log-ratios 0.1 0.3 | -0.2 0.0 | 0.5 (overflow) | 0.7 (padding), max_ranks 2:
    # rank 0 -> (0.1 + 0.3) / 2 = 0.2, rank 1 -> (-0.2 + 0.0) / 2 = -0.1, overflow and padding keep their own.
    logps = torch.tensor([[0.1, 0.3, -0.2, 0.0, 0.5, 0.7]])
    old = torch.zeros_like(logps)
    rank_ids = torch.tensor([[0, 0, 1, 1, 2, -1]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    expected = torch.tensor([[0.2, 0.2, -0.1, -0.1, 0.5, 0.7]])
    torch.testing.assert_close(rank_log_ratio(logps, old, rank_ids, mask, max_ranks=2), expected)


def test_rank_log_ratio_ignores_masked_tokens_of_a_rank():
    # logps - old = 0.2, 0.4, 9.0 all in rank 0, the third masked: mean (0.2 + 0.4) / 2 = 0.3; the masked one keeps 9.
    logps = torch.tensor([[-1.0, -2.0, 4.0]])
    old = torch.tensor([[-1.2, -2.4, -5.0]])
    out = rank_log_ratio(logps, old, torch.tensor([[0, 0, 0]]), torch.tensor([[1, 1, 0]]), max_ranks=3)
    torch.testing.assert_close(out, torch.tensor([[0.3, 0.3, 9.0]]))


def test_rank_advantage_per_token_gathers_and_zeroes_overflow_and_no_item():
    advantages = torch.tensor([[0.5, -1.0]])
    rank_ids = torch.tensor([[-1, 0, 0, 1, 2, -1]])
    assert rank_advantage_per_token(advantages, rank_ids).tolist() == [[0.0, 0.5, 0.5, -1.0, 0.0, 0.0]]


def test_eos_mask_is_the_last_unmasked_token_when_it_is_eos():
    ids, mask = _batch([A, NL, EOS], [A, NL, B], [EOS])
    assert eos_mask(ids, mask, EOS).tolist() == [[False, False, True], [False, False, False], [True, False, False]]
    assert eos_mask(ids, mask, [B, EOS]).tolist() == [[False, False, True], [False, False, True], [True, False, False]]


def test_length_shaping_published_rules():
    # n_items 2.  Row 1 "A\nB\n<eos>": exactly 2 items -> +0.1 on EOS.  Row 2 "A\n<eos>": early -> -0.1 on EOS.
    # Row 3 "A\nB\nC\n<eos>": C and its newline are past 2 items -> -0.1 each; EOS after 3 items gets nothing.
    # Row 4 "A\nB": cut at the length limit, no EOS -> nothing.  Row 5 "\n<eos>": no item at all -> early, -0.1.
    ids, mask = _batch([A, NL, B, NL, EOS], [A, NL, EOS], [A, NL, B, NL, C, NL, EOS], [A, NL, B], [NL, EOS])
    rank_ids = segment_ranks(ids, mask, NEWLINES, 2, TEXTLESS, eos_token_id=EOS)
    shaping = length_shaping(rank_ids, ids, mask, EOS, n_items=2)
    expected = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0],
            [0.0, 0.0, -0.1, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, -0.1, -0.1, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, -0.1, 0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(shaping, expected)


def test_missing_rank_credit_hand_values():
    # N = 3. Row 1 "A\n<eos>": 1 item, early -> EOS gets A_2 + A_3 = -0.25 + -1.0 = -1.25.
    # Row 2 "A\nB\nC\n<eos>": exactly 3 items -> nothing.  Row 3 "A\nB": cut at the length limit, no EOS -> nothing.
    # Row 4 "\n<eos>": no item -> EOS gets A_1 + A_2 + A_3 = 0.25 + 0.5 + 0.125 = 0.875.
    # Row 5 "A\nB\nC\nD\n<eos>": 4 items (overflow), no missing rank -> nothing.
    ids, mask = _batch(
        [A, NL, EOS], [A, NL, B, NL, C, NL, EOS], [A, NL, B], [NL, EOS], [A, NL, B, NL, C, NL, D, NL, EOS]
    )
    rank_ids = segment_ranks(ids, mask, NEWLINES, 3, TEXTLESS, eos_token_id=EOS)
    assert items_emitted(rank_ids, eos_mask(ids, mask, EOS)).tolist() == [1, 3, 2, 0, 4]
    advantages = torch.tensor([[0.5, -0.25, -1.0]] * 3 + [[0.25, 0.5, 0.125]] * 2)
    expected = torch.zeros(5, 9)
    expected[0, 2] = -1.25
    expected[3, 1] = 0.875
    torch.testing.assert_close(missing_rank_credit(advantages, rank_ids, ids, mask, EOS), expected)


def _token_advantages(
    rows: list[list[int]], hits: list[list[float]], n_items: int, credit: bool, shaping: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token advantages as the trainer builds them (exp_inf rank advantages of one group, the missing-rank
    credit when `credit`, the published length shaping when `shaping`) and the token ranks."""
    ids, mask = _batch(*rows)
    rank_ids = segment_ranks(ids, mask, NEWLINES, n_items, TEXTLESS, eos_token_id=EOS)
    advantages = rank_advantages(rank_rewards(torch.tensor(hits), "exp_inf"), group_size=len(rows))
    tokens = rank_advantage_per_token(advantages, rank_ids)
    if credit:
        tokens = tokens + missing_rank_credit(advantages, rank_ids, ids, mask, EOS)
    if shaping:
        tokens = tokens + length_shaping(rank_ids, ids, mask, EOS, n_items)
    return tokens, rank_ids


def _action_total(token_advantages: torch.Tensor, rank_ids: torch.Tensor, n_items: int) -> float:
    """Total advantage of one completion's actions: each item once (its tokens share A_k, and on-policy their
    gradients add up to A_k * grad log pi(item)), plus every token outside the ranks (EOS, overflow) on its own."""
    total = 0.0
    for rank in range(n_items):
        in_rank = rank_ids == rank
        if in_rank.any():
            total += token_advantages[in_rank].mean().item()
    return total + token_advantages[(rank_ids < 0) | (rank_ids >= n_items)].sum().item()


def test_shortening_the_list_lowers_the_total_advantage():
    """With length shaping, stopping after 1 of 3 items scores strictly below listing 3 when items 2-3 are misses.

    Group of 3, n_items 3, positions kept (a missing rank is a miss). Full list "A\\nB\\nC\\n<eos>" with hits 1 0 0
    vs. its shortened "A\\n<eos>" with the same hits 1 0 0; the others hit 0 0 0 and 1 0 0. Ranks 2 and 3 nobody hits:
    advantage 0 (so no missing-rank credit either), so the full list totals A_1 + 0.1 and the short one A_1 - 0.1.
    """
    others = [[B, NL, C, NL, D, NL, EOS], [A, NL, C, NL, D, NL, EOS]]
    other_hits = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    for credit in (False, True):
        full, full_ranks = _token_advantages([[A, NL, B, NL, C, NL, EOS], *others], [[1.0, 0.0, 0.0], *other_hits],
                                             3, credit)
        short, short_ranks = _token_advantages([[A, NL, EOS], *others], [[1.0, 0.0, 0.0], *other_hits], 3, credit)
        # The rank advantages of the whole group do not change: the shortened list has the same hits.
        torch.testing.assert_close(full[1:], short[1:])
        # A_1 for hits 1, 0, 1: (1 - 2/3) / (0.5773503 + 1e-4) = 0.5772503.
        assert _action_total(full[0], full_ranks[0], 3) == pytest.approx(0.5772503 + 0.1, abs=1e-6)
        assert _action_total(short[0], short_ranks[0], 3) == pytest.approx(0.5772503 - 0.1, abs=1e-6)


def test_published_shaping_alone_can_be_gamed_by_dropping_misses():
    """The limit of the published shaping (missing_rank_credit off): when another completion hits at a dropped rank,
    the full list's miss there carries a negative advantage that the shortened list avoids, and 0.1 + 0.1 does not
    make up for it. The missing-rank credit puts that advantage on the early EOS, and shortening loses 0.2.

    Group of 2, n_items 2: the completion lists "A\\nB\\n" (hits 1 0) or stops after "A\\n"; the other hits 1 1.
    Rank 1 rewards 1, 1: advantage 0. Rank 2 rewards 0, 1: mean 0.5, deviations -+0.5, unbiased std
    sqrt(0.25 + 0.25) = 0.7071068 -> -+0.5 / 0.7072068 = -+0.7070068.
    Full list: 0 (rank 1) - 0.7070068 (rank 2) + 0.1 (EOS after exactly 2) = -0.6070068, with or without credit.
    Shortened, published: -0.1 on its EOS only, above the full list. With credit: -0.1 - 0.7070068 = -0.8070068.
    """
    other = [A, NL, C, NL, EOS]
    hits = [[1.0, 0.0], [1.0, 1.0]]
    for credit, short_total in ((False, -0.1), (True, -0.8070068)):
        full, full_ranks = _token_advantages([[A, NL, B, NL, EOS], other], hits, 2, credit)
        short, short_ranks = _token_advantages([[A, NL, EOS], other], hits, 2, credit)
        assert _action_total(full[0], full_ranks[0], 2) == pytest.approx(-0.6070068, abs=1e-6)
        assert _action_total(short[0], short_ranks[0], 2) == pytest.approx(short_total, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_with_missing_rank_credit_no_group_pays_for_shortening(data):
    """For any group of hit vectors, a completion stopped after m < N items totals exactly (bonus + penalty) = 0.2
    less than the same completion completed with N - m misses (and exactly as much with the shaping off)."""
    n_items = data.draw(st.integers(1, 5), label="N")
    group = data.draw(st.integers(2, 5), label="G")
    kept = data.draw(st.integers(0, n_items - 1), label="items kept")
    hit = st.floats(0.0, 1.0) | st.sampled_from([0.0, 1.0])
    hits = data.draw(st.lists(st.lists(hit, min_size=n_items, max_size=n_items), min_size=group, max_size=group))
    hits[0] = hits[0][:kept] + [0.0] * (n_items - kept)  # ranks the shortened list does not generate are misses
    lengths = data.draw(st.lists(st.integers(1, 3), min_size=n_items, max_size=n_items), label="tokens per item")
    items = [[A] * length + [NL] for length in lengths]
    others = [[A, NL] * n_items + [EOS]] * (group - 1)
    completed = [token for item in items for token in item] + [EOS]
    shortened = [token for item in items[:kept] for token in item] + [EOS]
    for shaping, margin in ((True, 0.2), (False, 0.0)):
        full, full_ranks = _token_advantages([completed, *others], hits, n_items, credit=True, shaping=shaping)
        short, short_ranks = _token_advantages([shortened, *others], hits, n_items, credit=True, shaping=shaping)
        full_total = _action_total(full[0], full_ranks[0], n_items)
        short_total = _action_total(short[0], short_ranks[0], n_items)
        assert short_total <= full_total + 1e-5
        assert full_total - short_total == pytest.approx(margin, abs=1e-5)


# ------------------------------------------------------------------------------------------------------------- loss


def test_clipped_token_loss_hand_values():
    # ratio 1.2, A +1: clip 1.08, min(1.2, 1.08) = 1.08 -> -1.08.   ratio 1.2, A -1: min(-1.2, -1.08) -> 1.2.
    # ratio 0.9, A +1: clip 0.94, min(0.9, 0.94) = 0.9 -> -0.9.     ratio 0.9, A -1: min(-0.9, -0.94) -> 0.94.
    # ratio 1.0, A 2: no clipping -> -2.
    log_ratio = torch.log(torch.tensor([[1.2, 1.2, 0.9, 0.9, 1.0]]))
    advantages = torch.tensor([[1.0, -1.0, 1.0, -1.0, 2.0]])
    expected = torch.tensor([[-1.08, 1.2, -0.9, 0.94, -2.0]])
    torch.testing.assert_close(rank_grpo_token_loss(log_ratio, advantages, eps_low=0.06, eps_high=0.08), expected)


def _policy_gradient(log_ratio_fn, weights: torch.Tensor, off_policy: bool) -> torch.Tensor:
    """Gradient wrt a tiny policy's weights of sum_t weights_t * loss_t, for a fixed random batch."""
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 7, 5, generator=generator)
    tokens = torch.randint(0, 11, (2, 7), generator=generator)
    policy = torch.randn(5, 11, generator=generator).requires_grad_(True)
    logps = torch.log_softmax(hidden @ policy, dim=-1).gather(2, tokens.unsqueeze(2)).squeeze(2)
    old = logps.detach() + (0.3 * torch.randn(2, 7, generator=generator) if off_policy else 0.0)
    rank_ids = torch.tensor([[-1, 0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 1, -1, -1]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]])
    rank_adv = torch.tensor([[0.7, -1.3], [-0.4, 0.9]])
    advantages = rank_advantage_per_token(rank_adv, rank_ids) + torch.tensor([[0.0] * 6 + [-0.1], [0.0] * 7])
    loss = rank_grpo_token_loss(log_ratio_fn(logps, old, rank_ids, mask), advantages)
    (loss * mask * weights).sum().backward()
    return policy.grad


def _rank_level(logps, old, rank_ids, mask):
    return rank_log_ratio(logps, old, rank_ids, mask, max_ranks=2)


def _token_level(logps, old, rank_ids, mask):
    return logps - old


def test_on_policy_rank_ratio_gradient_equals_token_ratio_gradient():
    """mu = 1: same gradient for every aggregation that weights all tokens of a rank alike (see
    rank_grpo_token_loss); not for weights that differ inside a rank, and not off-policy."""
    token_sum = torch.ones(2, 7)
    sequence_mean = torch.tensor([[1 / 7] * 7, [1 / 5] * 7])  # TRL "grpo": mean over each completion's tokens
    batch_mean = torch.full((2, 7), 1 / 12)  # TRL "bnpo"/"dapo": mean over all 12 tokens
    for weights in (token_sum, sequence_mean, batch_mean):
        rank = _policy_gradient(_rank_level, weights, off_policy=False)
        token = _policy_gradient(_token_level, weights, off_policy=False)
        torch.testing.assert_close(rank, token, atol=1e-6, rtol=1e-5)
        assert rank.abs().sum() > 0
    uneven = torch.tensor([[1.0, 2.0, 1.0, 3.0, 1.0, 1.0, 1.0], [1.0] * 7])  # different weights inside rank 0
    assert not torch.allclose(
        _policy_gradient(_rank_level, uneven, off_policy=False),
        _policy_gradient(_token_level, uneven, off_policy=False),
    )
    assert not torch.allclose(
        _policy_gradient(_rank_level, token_sum, off_policy=True),
        _policy_gradient(_token_level, token_sum, off_policy=True),
    )

