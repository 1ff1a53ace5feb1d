"""Datasets for demos, tests and benchmarks (DESIGN section 8).

``av_digits`` builds the AV-digits sets (offline demo and FSDD+MNIST) and writes them as mp4
files; ``dtmf``, ``mnist``, ``fsdd`` and ``degradation`` are its parts; ``probe`` checks that a
set is unsure per modality and sure with both. Nothing is imported here, so importing the
package stays cheap.
"""
