"""The multi-task loss that follows the tag groups, and the CentralNet loss on top of it.

Column j of the logits is ``vocab.tags[j]``. Each group of mutually exclusive tags is one
softmax cross-entropy; each ungrouped tag is one sigmoid binary cross-entropy. Only labeled
entries count: ``known (B, K)`` says which target entries a person actually decided.

Weighting: every labeled decision is one term (a group on a clip whose known targets include a
positive, or a known ungrouped tag on a clip) and the loss is the mean over terms. So a batch's
loss does not depend on its size or on how sparsely it is labeled; a vocabulary of many
ungrouped tags weighs each of them like one group decision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tagloop.errors import InvalidInput
from tagloop.fusion.base import FusionOutput
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
        mass = group_targets.sum(dim=1)
        valid = mass > 0
        n_valid = int(valid.sum())
        if n_valid == 0:
            continue
        dist = group_targets[valid] / mass[valid, None]
        log_probs = F.log_softmax(logits[valid][:, ix], dim=1)
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
    """``(B, K)`` probabilities: softmax within each group, sigmoid for ungrouped tags."""
    if logits.ndim != 2 or logits.shape[1] != len(vocab):
        raise InvalidInput(
            f"logits must be (B, {len(vocab)}), got {tuple(logits.shape)}", code="bad_logits"
        )
    probs = torch.sigmoid(logits)
    for columns in vocab.group_indices.values():
        ix = torch.as_tensor(columns, device=logits.device)
        # Out of place, so the result can still be differentiated.
        probs = probs.index_copy(1, ix, torch.softmax(logits[:, ix], dim=1))
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
