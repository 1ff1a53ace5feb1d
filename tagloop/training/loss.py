"""The multi-task loss that follows the tag groups, and the CentralNet loss on top of it.

Column j of the logits is ``vocab.tags[j]``. Each group of mutually exclusive tags is one
softmax cross-entropy over its tags and an implicit "none of these" outcome with a fixed zero
logit (``tagloop.none_outcome``): ``softmax([z_1..z_G, 0])``, so a clip on which nobody speaks
teaches the model that, and no head changes shape. Each ungrouped tag is one sigmoid binary
cross-entropy. Only labeled entries count: ``known (B, K)`` says which target entries a person
actually decided.

Weighting: every labeled decision is one term (a group on a clip where it is decided: a known
positive, or all its columns known, which without a positive means "none"; or a known
ungrouped tag on a clip) and the loss is the mean over terms. So a batch's
loss does not depend on its size or on how sparsely it is labeled; a vocabulary of many
ungrouped tags weighs each of them like one group decision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tagloop.errors import InvalidInput
from tagloop.fusion.base import FusionOutput
from tagloop.none_outcome import NONE_LOGIT
from tagloop.vocabulary import TagVocabulary


def check_targets(
    logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor, *, vocab: TagVocabulary
) -> None:
    """Raise InvalidInput unless logits/targets/known are all ``(B, len(vocab))``."""
    expected = (logits.shape[0], len(vocab))
    for name, tensor in (("logits", logits), ("targets", targets), ("known", known)):
        if tensor.ndim != 2 or tuple(tensor.shape) != expected:
            raise InvalidInput(
                f"{name} must be {expected}, got {tuple(tensor.shape)}", code="bad_loss_input"
            )
    if known.dtype != torch.bool:
        raise InvalidInput(f"known must be bool, got {known.dtype}", code="bad_loss_input")


def group_decided(
    known: torch.Tensor, group_targets: torch.Tensor, ix: torch.Tensor
) -> torch.Tensor:
    """``(B,)`` bool: the group ``ix`` is decided on each sample (``none_outcome.group_decided``);
    ``group_targets (B, G)`` are its targets with unknown entries already zeroed."""
    return (group_targets.sum(dim=1) > 0) | known[:, ix].all(dim=1)


def with_none_logit(group_logits: torch.Tensor) -> torch.Tensor:
    """``(B, G) -> (B, G + 1)``: a group's logits with the fixed "none" logit appended."""
    none = group_logits.new_full((group_logits.shape[0], 1), NONE_LOGIT)
    return torch.cat([group_logits, none], dim=1)


def multitask_loss(
    logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor, *, vocab: TagVocabulary
) -> torch.Tensor:
    """Mean loss over labeled decisions; a scalar (0 with a graph when nothing is labeled).

    logits ``(B, K)``; targets ``(B, K)`` multi-hot float (soft targets allowed: several
    annotators' votes are spread over a group's tags); known ``(B, K)`` bool. A group whose known
    targets on a sample hold no positive is skipped for that sample: "not tag x" alone does not
    say which tag of the group it is.
    """
    check_targets(logits, targets, known, vocab=vocab)
    # Unlabeled entries may hold anything (even NaN); zero them so no gradient can turn NaN.
    targets = torch.where(known, targets.to(logits.dtype), 0.0)
    total = logits.new_zeros(())
    count = 0
    for columns in vocab.group_indices.values():
        ix = torch.as_tensor(columns, device=logits.device)
        group_targets = targets[:, ix]
        valid = group_decided(known, group_targets, ix)
        n_valid = int(valid.sum())
        if n_valid == 0:
            continue
        mass = group_targets[valid].sum(dim=1, keepdim=True)
        # Positives normalised over the group; no positive: all the mass on "none".
        dist = torch.cat(
            [group_targets[valid] / mass.clamp_min(1e-12), (mass <= 0).to(logits.dtype)], dim=1
        )
        log_probs = F.log_softmax(with_none_logit(logits[valid][:, ix]), dim=1)
        total = total - (dist * log_probs).sum()
        count += n_valid
    ungrouped = vocab.ungrouped_indices
    if ungrouped.size:
        ix = torch.as_tensor(ungrouped, device=logits.device)
        mask = known[:, ix]
        n_known = int(mask.sum())
        if n_known:
            bce = F.binary_cross_entropy_with_logits(
                logits[:, ix], targets[:, ix], reduction="none"
            )
            total = total + bce[mask].sum()
            count += n_known
    if count == 0:
        # Keep the graph so a training step on an unlabeled batch is a no-op, not an error.
        return logits.sum() * 0.0
    return total / count


def probabilities(logits: torch.Tensor, *, vocab: TagVocabulary) -> torch.Tensor:
    """``(B, K)`` probabilities: for each group ``softmax([z_1..z_G, 0])`` without its last
    ("none") entry, so a group's columns sum to ``1 - P(none)``; sigmoid for ungrouped tags."""
    if logits.ndim != 2 or logits.shape[1] != len(vocab):
        raise InvalidInput(
            f"logits must be (B, {len(vocab)}), got {tuple(logits.shape)}", code="bad_logits"
        )
    probs = torch.sigmoid(logits)
    for columns in vocab.group_indices.values():
        ix = torch.as_tensor(columns, device=logits.device)
        # Out of place, so the result can still be differentiated.
        group = torch.softmax(with_none_logit(logits[:, ix]), dim=1)[:, :-1]
        probs = probs.index_copy(1, ix, group)
    return probs


def fusion_loss(
    output: FusionOutput,
    targets: torch.Tensor,
    known: torch.Tensor,
    *,
    vocab: TagVocabulary,
    betas: dict[str, float],
) -> torch.Tensor:
    """CentralNet loss: ``loss(central) + sum_m beta_m * loss(modality m)``; a scalar.

    ``betas`` may name modalities the model has no head for (a baseline); they are skipped, so
    one training loop serves every model kind. A unimodal head is not trained on clips that
    lack its modality (``output.modality_present``).
    """
    loss = multitask_loss(output.logits, targets, known, vocab=vocab)
    for name, beta in betas.items():
        if name not in output.modality_logits or beta == 0.0:
            continue
        modality_known = known
        present = output.modality_present.get(name)
        if present is not None:
            modality_known = known & present[:, None]
        unimodal = multitask_loss(
            output.modality_logits[name], targets, modality_known, vocab=vocab
        )
        loss = loss + beta * unimodal
    return loss
