"""Selection: which clips to label next.

Strategies are pure functions behind a name registry (``get_strategy``, ``list_strategies``,
``register_strategy``); ``score_pool`` scores a pool with tag groups respected; ``assemble_batch``
and ``seed_batch`` build a diverse batch under a per-video cap; ``top_k_streaming`` keeps the
best k of a pool of any size in O(k + chunk) memory. ``balanced_entropy`` weighs rare tags more
(``count_tag_labels`` gives its counts; ``tag_balanced_cluster`` weighs independent tags
only); ``cluster_margin``, the balanced ``*_cluster`` strategies (``balanced_cluster`` is the
default) and the typical seed rule build batches on k-means clusters (``selection.cluster``).
"""

from tagloop.selection.balance import (
    class_balanced_weights,
    count_tag_labels,
    score_balanced_entropy,
)
from tagloop.selection.batch import SEED_RULES, SeedRule, assemble_batch, pick_k_center, seed_batch
from tagloop.selection.cluster import fit_kmeans, pick_cluster_round_robin, pick_typical
from tagloop.selection.rank import rank_clips, select_top_k, top_k_streaming
from tagloop.selection.registry import (
    BATCH_RULES,
    BatchRule,
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
    "BATCH_RULES",
    "SEED_RULES",
    "BatchRule",
    "SeedRule",
    "Strategy",
    "UnitInputs",
    "assemble_batch",
    "class_balanced_weights",
    "count_tag_labels",
    "fit_kmeans",
    "get_strategy",
    "list_strategies",
    "pick_cluster_round_robin",
    "pick_k_center",
    "pick_typical",
    "rank_clips",
    "register_strategy",
    "score_balanced_entropy",
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
