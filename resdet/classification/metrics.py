"""Top-k accuracy counts, summed over batches (and ranks) before dividing."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def topk_correct(
    scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)
) -> dict[int, int]:
    """How many of the `N` rows of `scores` `[N, C]` have `labels` `[N]` among
    their `k` highest scores.

    `k` larger than `C` counts every row as correct. Ties are broken by `torch.topk`'s order.
    """
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(
            f"scores must be [N, C] and labels [N], got {tuple(scores.shape)} and "
            f"{tuple(labels.shape)}"
        )
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices  # (N, kmax), best first
    hit = top == labels[:, None]
    return {k: int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks}
