"""Clip embeddings from pretrained branches, for the diversity terms before any model exists.

The seed batch is k-center over clip vectors. Raw descriptors (``features.descriptor``)
measure how clips differ in pixels and spectra; after a pretraining run the branches measure
how they differ in what the picture shows and the sound says, which is what a diverse first
batch of labels should span.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tagloop.features.clip_tensor import ClipTensors
from tagloop.fusion.branch import AudioBranch, VisualBranch
from tagloop.fusion.config import FusionConfig
from tagloop.training.backbone import load_branch
from tagloop.training.dataset import crop_logmel

_BATCH = 256


class PretrainedEncoders:
    """The two branches of a pretraining run, in eval mode."""

    def __init__(self, state: dict[str, torch.Tensor], *, config: FusionConfig) -> None:
        from pathlib import Path

        self.visual = VisualBranch(config).eval()
        self.audio = AudioBranch(config).eval()
        origin = Path("<pretraining run>")
        for name, module in (("visual", self.visual), ("audio", self.audio)):
            prefix = f"{name}."
            own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            load_branch(module, own, path=origin)

    def embed(self, clips: Sequence[ClipTensors], *, audio_frames: int | None) -> np.ndarray:
        """``(N, D_v + D_a)`` float32: each branch's last block output, L2-normalised per
        branch so neither modality dominates the distances; zero audio part without audio."""
        out = []
        with torch.no_grad():
            for first in range(0, len(clips), _BATCH):
                chunk = clips[first : first + _BATCH]
                frames = torch.stack([c.frames for c in chunk])
                logmel = crop_logmel(
                    torch.stack([c.logmel for c in chunk]).float(), audio_frames=audio_frames
                )
                mask = torch.tensor([bool(c.audio_mask) for c in chunk])
                visual = torch.nn.functional.normalize(self.visual(frames)[-1], dim=1)
                audio = torch.nn.functional.normalize(self.audio(logmel, mask)[-1], dim=1)
                audio = torch.where(mask[:, None], audio, 0.0)
                out.append(torch.cat([visual, audio], dim=1))
        return torch.cat(out).numpy().astype(np.float32)
