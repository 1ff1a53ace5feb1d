"""Model capacity by label count: what a round trains with the labels it has.

A CentralNet with two CNN branches has tens of thousands of weights; with 40 labels it
overfits and its uncertainty is noise, while a linear model on fixed clip features (and on
frozen pretrained embeddings, when a pretraining run exists) is already useful. A round
therefore trains the linear ``probe`` below ``probe_below`` training labels and the configured
full model from there on. With pretrained branches the probe on their frozen embeddings stays
ahead for longer, so the switch comes later (``probe_below_for``). Promotion still guards the
switch: a full model that is not better than the promoted probe on the same clips is not served.
"""

from __future__ import annotations

from tagloop.errors import InvalidInput

PROBE_KIND = "probe"


def model_kind_for(n_labels: int, *, full_kind: str, probe_below: int) -> str:
    """``"probe"`` when ``n_labels < probe_below``, else ``full_kind`` (0 turns the probe off)."""
    if n_labels < 0 or probe_below < 0:
        raise InvalidInput("label counts must be >= 0", code="bad_option")
    return PROBE_KIND if n_labels < probe_below else full_kind


def probe_below_for(*, pretrained: bool, probe_below: int, probe_below_pretrained: int) -> int:
    """The label count where a round switches from the probe to the full model: later when
    the branches start from pretrained weights (a pretraining run or weight files)."""
    if probe_below < 0 or probe_below_pretrained < 0:
        raise InvalidInput("label counts must be >= 0", code="bad_option")
    return probe_below_pretrained if pretrained else probe_below
