"""Rank-GRPO math as pure tensor functions (Zhu et al., "Rank-GRPO", arXiv 2510.20150).

A completion is a ranked list, one item per non-blank line. Rank-GRPO scores each rank separately, normalises each
rank's reward over the G completions of a prompt, maps every token to the rank (line) it belongs to, and uses a
rank-level importance ratio: the geometric mean of the token ratios of the rank. Shapes: B completions (B = prompts x
G where grouped), N ranks (list length), T completion tokens.

Token -> rank convention (`segment_ranks`), shared by every function here:
- rank id k in [0, max_ranks): the token belongs to the (k+1)-th non-blank line of the text, the same entry as
  `bench.evaluation.parsing.parse_lines(text)[k]`;
- rank id max_ranks: overflow, a token of a line past the first max_ranks non-blank lines;
- rank id -1: the token belongs to no item: padding, blank tokens before the first item, and (when EOS ids are given)
  the final EOS token, which the length shaping handles on its own.
"""

from collections.abc import Sequence

import torch
from torch import Tensor

RANK_REWARDS = ("exp_inf", "log_decay")
"""Names of the per-rank rewards of the paper (Sec. 4.1): `exp_inf` (r_k = hit_k) and `log_decay` (DCG from k)."""

ADVANTAGE_EPS = 1e-4
"""Added to the per-rank group std before dividing, as in the paper's trainer and TRL."""

TokenIds = Tensor | Sequence[int]
"""A set of token ids: a 1-D tensor or any sequence of ints."""


def rank_rewards(hits: Tensor, kind: str) -> Tensor:
    """Per-rank rewards from per-rank hits (paper Sec. 4.1, Eq. for r(x, y^(k))).

    Args:
        hits: (B, N) float, 1.0 where the item at rank k (0-based column k-1) hits a ground truth, else 0.0.
        kind: `exp_inf`: r_k = hit_k (only the item's own relevance; the "exponential decay, gamma -> inf" limit).
            `log_decay`: r_k = sum_{j >= k} hit_j / log2(j + 1) with 1-based j, the DCG of the list from rank k to
            the end (credit of earlier ranks removed, since rank k cannot change them).

    Returns:
        (B, N) float rewards.

    Raises:
        ValueError: unknown `kind`.
    """
    if kind not in RANK_REWARDS:
        raise ValueError(f"Unknown rank reward {kind!r}; choose one of {', '.join(RANK_REWARDS)}.")
    hits = hits.float()
    if kind == "exp_inf":
        return hits.clone()
    positions = torch.arange(1, hits.size(1) + 1, dtype=hits.dtype, device=hits.device)
    gains = hits / torch.log2(positions + 1)
    return gains.flip(1).cumsum(1).flip(1)


def rank_advantages(rewards: Tensor, group_size: int, scale: bool = True) -> Tensor:
    """Per-rank group-relative advantages (paper Eq. 8): A_{i,k} = (r_{i,k} - mean_k) / (std_k + 1e-4).

    Mean and std are taken for each rank k over the `group_size` completions of the same prompt; the std is the
    unbiased one (torch default), as in the published trainer. With `group_size == 1` the advantages are zero.

    Args:
        rewards: (B*G, N), rows i*G .. i*G+G-1 are the G completions of prompt i.
        group_size: G.
        scale: divide by (std_k + 1e-4); False keeps only the mean-centring (Dr. GRPO style).

    Returns:
        (B*G, N) advantages.
    """
    if rewards.size(0) % group_size != 0:
        raise ValueError(f"{rewards.size(0)} rows do not split into groups of {group_size}.")
    grouped = rewards.view(-1, group_size, rewards.size(1))
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale and group_size > 1:
        centred = centred / (grouped.std(dim=1, keepdim=True) + ADVANTAGE_EPS)
    return centred.reshape_as(rewards)


def _as_ids(token_ids: int | TokenIds, device: torch.device) -> Tensor:
    """One id or a set of ids as a 1-D long tensor on `device`."""
    return torch.as_tensor(token_ids, dtype=torch.long, device=device).reshape(-1)


def eos_mask(completion_ids: Tensor, completion_mask: Tensor, eos_token_id: int | TokenIds) -> Tensor:
    """Where each completion's EOS token is: its last unmasked token, when that token is an EOS id.

    TRL cuts every completion right after its first EOS, so this is the EOS that ended generation; a completion
    truncated at the length limit has none.

    Args:
        completion_ids: (B, T) token ids.
        completion_mask: (B, T), 1 for real tokens, 0 for padding.
        eos_token_id: one id or several (a generation config may stop on several ids).

    Returns:
        (B, T) bool, at most one True per row.
    """
    valid = completion_mask.bool()
    is_last = valid & (valid.long().cumsum(1) == valid.long().sum(1, keepdim=True))
    return is_last & torch.isin(completion_ids, _as_ids(eos_token_id, completion_ids.device))


def item_starts(
    completion_ids: Tensor,
    completion_mask: Tensor,
    newline_token_ids: TokenIds,
    whitespace_token_ids: TokenIds | None = None,
) -> Tensor:
    """Where each non-blank line of the completion starts: its first token with visible text.

    A token "closes" a line when its text contains a line break (`newline_token_ids`); a token "has text" unless it is
    in `whitespace_token_ids` (tokens whose text is empty or whitespace only, pure-newline tokens included; None
    means only the newline tokens are textless). A line is non-blank iff one of its tokens has text, which is how
    `bench.evaluation.parsing.split_lines` drops lines whose `strip()` is empty. A token whose text holds a line break and other
    text (e.g. ").\\n") has text and closes its line: its text counts for the line it closes. Approximation: text
    after the break inside such a token (e.g. "\\nThe") is also counted for the closed line; tokenizers rarely merge
    a newline with the following word.

    Args:
        completion_ids: (B, T) token ids.
        completion_mask: (B, T), 1 for real tokens, 0 for padding.
        newline_token_ids: ids of tokens whose text contains a line break (see `newline_token_ids`).
        whitespace_token_ids: ids of tokens without visible text (see `whitespace_token_ids`).

    Returns:
        (B, T) bool, True at the first text token of each non-blank line.
    """
    device = completion_ids.device
    valid = completion_mask.bool()
    closes = valid & torch.isin(completion_ids, _as_ids(newline_token_ids, device))
    textless = whitespace_token_ids if whitespace_token_ids is not None else newline_token_ids
    has_text = valid & ~torch.isin(completion_ids, _as_ids(textless, device))
    text_count = has_text.long().cumsum(1)  # (B, T): text tokens up to and including t
    positions = torch.arange(completion_ids.size(1), device=device).expand_as(completion_ids)
    last_close = torch.where(closes, positions, -1).cummax(1).values  # last closing token at or before t
    close_before = torch.cat([last_close.new_full((last_close.size(0), 1), -1), last_close[:, :-1]], dim=1)
    count_padded = torch.cat([text_count.new_zeros((text_count.size(0), 1)), text_count], dim=1)
    text_before_line = count_padded.gather(1, close_before + 1)  # text tokens before t's line began
    return has_text & (text_count - text_before_line == 1)


def segment_ranks(
    completion_ids: Tensor,
    completion_mask: Tensor,
    newline_token_ids: TokenIds,
    max_ranks: int,
    whitespace_token_ids: TokenIds | None = None,
    eos_token_id: int | TokenIds | None = None,
) -> Tensor:
    """Rank id of every completion token (paper Sec. 4.2: tokens y^(k) of the k-th item).

    A token belongs to the item whose line it is in; a newline belongs to the item it closes. Only non-blank lines
    are items (see `item_starts`), so the k-th item here is `bench.evaluation.parsing.parse_lines(text)[k]`, parsable or not.
    Blank tokens (whitespace, blank lines) after an item belong to that item, up to the first text token of the next
    one; blank tokens before the first item belong to no item (-1). Items past `max_ranks` share the overflow id
    `max_ranks`. Padding gets -1, and so does the EOS token when `eos_token_id` is given (see `eos_mask`).

    Args:
        completion_ids: (B, T) token ids.
        completion_mask: (B, T), 1 for real tokens, 0 for padding.
        newline_token_ids: ids of tokens whose text contains a line break.
        max_ranks: N, the number of ranks with their own id.
        whitespace_token_ids: ids of tokens without visible text (defaults to the newline ids).
        eos_token_id: EOS id(s); the final EOS token then gets -1.

    Returns:
        (B, T) long rank ids in {-1, 0, ..., max_ranks}.
    """
    starts = item_starts(completion_ids, completion_mask, newline_token_ids, whitespace_token_ids)
    rank_ids = (starts.long().cumsum(1) - 1).clamp(max=max_ranks)
    no_item = ~completion_mask.bool()
    if eos_token_id is not None:
        no_item = no_item | eos_mask(completion_ids, completion_mask, eos_token_id)
    return rank_ids.masked_fill(no_item, -1)


def _decoded_vocabulary(tokenizer) -> list[str]:
    """The text of every token id alone, as the completion text is decoded (special tokens skipped)."""
    ids = [[token_id] for token_id in range(len(tokenizer))]
    return tokenizer.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def _has_line_break(text: str) -> bool:
    """Whether `text` contains a line break as `str.splitlines` (hence `bench.evaluation.parsing`) sees one."""
    return len(f"x{text}x".splitlines()) > 1


def newline_token_ids(tokenizer) -> list[int]:
    """Ids of the tokens whose decoded text contains a line break ("\\n", "\\n\\n", "\\r\\n", ").\\n", ...).

    Any `str.splitlines` boundary counts, so that lines here are the lines of `bench.evaluation.parsing.split_lines`.
    """
    return [token_id for token_id, text in enumerate(_decoded_vocabulary(tokenizer)) if _has_line_break(text)]


def whitespace_token_ids(tokenizer) -> list[int]:
    """Ids of the tokens without visible text: decoded text empty (special tokens) or whitespace only (newlines
    included), i.e. `text.strip() == ""`, the test `bench.evaluation.parsing.split_lines` applies to lines."""
    return [token_id for token_id, text in enumerate(_decoded_vocabulary(tokenizer)) if not text.strip()]


def rank_log_ratio(logps: Tensor, old_logps: Tensor, rank_ids: Tensor, mask: Tensor, max_ranks: int) -> Tensor:
    """Rank-level log importance ratio, broadcast to tokens (paper Eq. 9).

    For a token of rank k: log w_k = (1/|y^(k)|) sum_{t in y^(k)} (log pi(y_t) - log pi_old(y_t)), the log of the
    geometric mean of the token ratios of the rank, over its unmasked tokens. Tokens without a rank (overflow id
    `max_ranks`, and -1: padding, blank tokens before the first item, EOS) keep their own token-level log-ratio; the
    published trainer instead pools all overflow tokens into one extra bucket.

    Args:
        logps: (B, T) log pi(y_t) under the current policy (with grad).
        old_logps: (B, T) log pi_old(y_t) of the policy that sampled (no grad).
        rank_ids: (B, T) from `segment_ranks`.
        mask: (B, T), 1 for tokens in the loss.
        max_ranks: N.

    Returns:
        (B, T) log ratios; gradients flow to every token of a rank through the mean.
    """
    token_log_ratio = logps - old_logps
    in_rank = mask.bool() & (rank_ids >= 0) & (rank_ids < max_ranks)
    bucket = torch.where(in_rank, rank_ids, max_ranks)  # bucket max_ranks collects the tokens without a rank
    weight = in_rank.to(token_log_ratio.dtype)
    shape = (rank_ids.size(0), max_ranks + 1)
    sums = token_log_ratio.new_zeros(shape).scatter_add(1, bucket, token_log_ratio * weight)
    counts = token_log_ratio.new_zeros(shape).scatter_add(1, bucket, weight)
    rank_means = sums / counts.clamp(min=1.0)
    return torch.where(in_rank, rank_means.gather(1, bucket), token_log_ratio)


def rank_advantage_per_token(advantages: Tensor, rank_ids: Tensor) -> Tensor:
    """Each token's rank advantage (paper Eq. 10: A_{i,k} applies to every token of item k).

    Args:
        advantages: (B, N) per-rank advantages from `rank_advantages`.
        rank_ids: (B, T) from `segment_ranks` with max_ranks = N.

    Returns:
        (B, T): advantages[b, rank_ids[b, t]] for ranks in [0, N); 0 for overflow tokens (they only get the length
        penalty) and for tokens of no item (-1).
    """
    num_ranks = advantages.size(1)
    has_rank = (rank_ids >= 0) & (rank_ids < num_ranks)
    gathered = advantages.gather(1, rank_ids.clamp(0, num_ranks - 1))
    return gathered * has_rank.to(gathered.dtype)


def items_emitted(rank_ids: Tensor, eos: Tensor) -> Tensor:
    """Number of items each completion emitted: highest rank id + 1 over its real tokens (EOS excluded).

    Args:
        rank_ids: (B, T) from `segment_ranks` (padding -1); overflow tokens (id N) count as N + 1 items.
        eos: (B, T) bool from `eos_mask`.

    Returns:
        (B,) long, 0 for a completion without any item.
    """
    return torch.where(~eos & (rank_ids >= 0), rank_ids, -1).amax(dim=1) + 1


def length_shaping(
    rank_ids: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    eos_token_id: int | TokenIds,
    n_items: int,
    bonus: float = 0.1,
    penalty: float = 0.1,
) -> Tensor:
    """Per-token advantage additions of the published trainer's length shaping.

    - +bonus on the EOS token when the completion ends with EOS after exactly `n_items` items (no overflow);
    - -penalty on the EOS token when it ends with EOS after fewer than `n_items` items (early stop);
    - -penalty on every token past `n_items` items (rank id >= n_items).
    The EOS token is the last unmasked token when it is an EOS id (`eos_mask`); a completion cut at the length limit
    has none and gets no EOS term. Items emitted as in `items_emitted` (so `rank_ids` must come from
    `segment_ranks` with max_ranks >= n_items); blank tokens before the first item and EOS have id -1 and count none.

    Alone, this does not stop a policy from gaining by shortening its list: the items it drops would have carried
    their own (miss) advantages, negative when other completions of the group hit at those ranks, and when their sum
    is below -(bonus + penalty) the shortened list scores higher. `missing_rank_credit` closes that gap.

    Args:
        rank_ids: (B, T) from `segment_ranks`.
        completion_ids: (B, T) token ids.
        completion_mask: (B, T), 1 for real tokens.
        eos_token_id: EOS id(s).
        n_items: N, the requested list length.
        bonus: added on the EOS of an exactly-N list.
        penalty: subtracted on an early EOS and on each overflow token.

    Returns:
        (B, T) float additions to the token advantages (0 on padding).
    """
    eos = eos_mask(completion_ids, completion_mask, eos_token_id)
    emitted = items_emitted(rank_ids, eos)
    terminated = eos.any(dim=1)
    exact = (terminated & (emitted == n_items)).float()
    early = (terminated & (emitted < n_items)).float()
    eos_value = bonus * exact - penalty * early
    past = (completion_mask.bool() & ~eos & (rank_ids >= n_items)).float()
    return eos.float() * eos_value.unsqueeze(1) - penalty * past


def missing_rank_credit(
    advantages: Tensor,
    rank_ids: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    eos_token_id: int | TokenIds,
) -> Tensor:
    """The advantages of the ranks a completion did not generate, put on its early EOS (our departure from the
    published trainer, `RankGRPOConfig.missing_rank_credit`).

    A completion that ends with EOS after m < N items gets sum_{k=m+1..N} A_k on its EOS token, where A_k are its
    own per-rank advantages (`rank_advantages`): the reward scores those ranks as misses (positions kept, missing
    ranks are 0), so A_k is exactly what a miss written at rank k would carry. Stopping early then earns what writing
    N - m misses earns, and the published length shaping (-penalty on the early EOS, +bonus on an exactly-N EOS)
    makes it strictly worse.

    "Earns" counts actions, not tokens: every token of item k carries A_k, and on-policy their gradients sum to
    A_k * grad log pi(item k) (`rank_grpo_token_loss`; all tokens weighted alike, as in TRL's `dapo` and `bnpo`), so
    an item is one action with advantage A_k, as the EOS is one action with its own. The total advantage of a list is sum over its items of A_k plus its EOS term; with this
    credit, cutting a list of N items (ended by EOS) to its first m < N changes that total by exactly
    -(bonus + penalty) with the published shaping, and by 0 without it (property test in
    tests/unit/test_rank_grpo_math.py). A token count (A_k * |item k|) could not be matched by any EOS credit, since
    the missing items' lengths are unknown.

    A completion cut at the length limit has no EOS and gets no credit (TRL's `mask_truncated_completions` drops such
    completions from the loss where that matters); one with overflow (more than N items) has no missing rank.

    Args:
        advantages: (B, N) per-rank advantages of these completions, from `rank_advantages`.
        rank_ids: (B, T) from `segment_ranks` with max_ranks = N.
        completion_ids: (B, T) token ids.
        completion_mask: (B, T), 1 for real tokens.
        eos_token_id: EOS id(s).

    Returns:
        (B, T) float additions to the token advantages: the credit on each early EOS token, 0 elsewhere.
    """
    eos = eos_mask(completion_ids, completion_mask, eos_token_id)
    num_ranks = advantages.size(1)
    emitted = items_emitted(rank_ids, eos)  # (B,)
    suffix = torch.cat([advantages.flip(1).cumsum(1).flip(1), advantages.new_zeros(advantages.size(0), 1)], dim=1)
    credit = suffix.gather(1, emitted.clamp(max=num_ranks).unsqueeze(1))  # (B, 1): sum of A_k over k >= emitted
    return eos.to(advantages.dtype) * credit


def rank_grpo_token_loss(
    log_ratio_rank: Tensor, advantages: Tensor, eps_low: float = 0.06, eps_high: float = 0.08
) -> Tensor:
    """Clipped surrogate per token with the rank-level ratio.

    loss_t = -min(w_t * A_t, clip(w_t, 1 - eps_low, 1 + eps_high) * A_t), with w_t = exp(log_ratio_rank_t): the
    paper's rank-level clipped objective (Eq. 11) put on every token of the rank, as the authors' trainer does
    (rank_grpo_trainer.py:2065-2075); how tokens are then averaged (TRL's `loss_type`) is the trainer's choice, not
    the paper's equation.

    On-policy (pi_old = pi detached, mu = 1) every w is 1 and clipping is inactive, so d loss_t = -A_t d w_t with
    d w_t = mean over the rank's tokens of d log pi. Summed over the n_k tokens of rank k (same A_k for all), this is
    -A_k sum_{s in y^(k)} d log pi(y_s): exactly the gradient of the token-level ratio loss with the same per-token
    advantages. The equality holds for any aggregation that weights all tokens of a rank equally (token sum,
    per-sequence mean as TRL's `grpo`, batch token mean as `bnpo`/`dapo`/`dr_grpo`); it fails if tokens within a rank
    get different weights (e.g. an entropy mask). Off-policy (mu > 1) the two differ: the rank ratio is clipped as a
    whole.

    Args:
        log_ratio_rank: (B, T) from `rank_log_ratio`.
        advantages: (B, T) per-token advantages.
        eps_low: lower clip range (paper 0.06).
        eps_high: upper clip range (paper 0.08).

    Returns:
        (B, T) per-token losses (unmasked; the caller masks and aggregates).
    """
    ratio = torch.exp(log_ratio_rank)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    return -torch.min(ratio * advantages, clipped * advantages)
