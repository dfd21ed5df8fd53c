"""FedAvg over LoRA factors: weighted (num-examples) average of A and B separately.

The baseline. It is inexact for LoRA: mean(B_i)·mean(A_i) != mean(B_i·A_i), and under DP the
noise on both factors adds a noise×noise term. Prefer ``ffa`` when DP is on.
"""

from __future__ import annotations

from strategies.base import LoraStrategy


class FedAvgLora(LoraStrategy):
    """Every adapter tensor is sent, trained, returned and averaged (by num-examples)."""

    mode = "fedavg"
