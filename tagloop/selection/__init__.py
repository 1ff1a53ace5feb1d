"""Selection: which clips to label next.

Strategies are pure functions behind a name registry (``get_strategy``, ``list_strategies``,
``register_strategy``); ``score_pool`` scores a pool with tag groups respected; ``assemble_batch``
and ``seed_batch`` build a diverse batch under a per-video cap; ``top_k_streaming`` keeps the
best k of a pool of any size in O(k + chunk) memory.
"""

from tagloop.selection.batch import assemble_batch, pick_k_center, seed_batch
from tagloop.selection.rank import rank_clips, select_top_k, top_k_streaming
from tagloop.selection.registry import (
    Strategy,
    UnitInputs,
    get_strategy,
    list_strategies,
    register_strategy,
)
from tagloop.selection.score import score_pool
from tagloop.selection.strategy import (
    score_bald,
    score_binary_entropy,
    score_disagreement,
    score_entropy,
    score_least_confidence,
    score_margin,
    score_mean_binary_entropy,
    score_min_margin,
    score_mutual_information,
    score_random,
)

__all__ = [
    "Strategy",
    "UnitInputs",
    "assemble_batch",
    "get_strategy",
    "list_strategies",
    "pick_k_center",
    "rank_clips",
    "register_strategy",
    "score_bald",
    "score_binary_entropy",
    "score_disagreement",
    "score_entropy",
    "score_least_confidence",
    "score_margin",
    "score_mean_binary_entropy",
    "score_min_margin",
    "score_mutual_information",
    "score_pool",
    "score_random",
    "seed_batch",
    "select_top_k",
    "top_k_streaming",
]
