"""SecAgg+'s sparse communication graph (Bell et al., CCS 2020) and the reconstruction threshold.

Graph. The n participants are ordered by SHA-256(seed ‖ node id), a permutation fixed by the public
seed the server sends at setup (every client recomputes it, so the server cannot hand two clients
different graphs), and joined as a Harary graph H(k, n): each node is linked to the k/2 nodes on
each side of it in that ring. Node i secret-shares with, and masks pairwise against, only its k
neighbours N(i), so a client's cost is O(k·d) instead of SecAgg's O(n·d).

Threshold. Node i's two secrets (its self-mask seed and its pairwise-mask private key) are shared
among the k + 1 holders N(i) ∪ {i}; any t shares reconstruct. Always a strict majority,
``t = ⌊(k + 1)/2⌋ + 1`` by default (see Security).

Degree. ``default_degree(n, δ, η)`` is the smallest even k (or n − 1, the complete graph) with

    k ≥ 2⌈log₂ n⌉   and   n · P[Binomial(k, δ) > k − t] ≤ η,

i.e. when every node drops independently with probability δ after sharing its keys, the chance that
some neighbourhood keeps fewer than t survivors is at most η (a union bound over the n nodes; the
binomial over-disperses the actual without-replacement count, so it errs safe). Defaults δ = 0.3,
η = 10⁻⁴. The degree grows as O(log(n/η)/(½ − δ)²): logarithmic in n, but with a majority threshold
and 30% dropouts the constant is large, so the graph is complete up to n = 100 (k = n − 1) and
sparse beyond: n = 200 → 142, n = 1000 → 160, n = 10⁵ → 212.

Correctness (the round completes). Every survivor s needs at least t holders in N(s) ∪ {s} that
answer the unmask request; every node d that shared its keys and then dropped needs t answering
survivors in N(d): "fewer than half of each neighbourhood drops". On the complete graph any
dropout of fewer than half the nodes is recovered; on a sparse graph a random δ-fraction is, except
with probability η. The server checks this before asking anyone to unmask, and aborts if not.

Security (what the server learns). Honest clients reveal, for each neighbour, either the self-mask
share (it survived) or the mask-key share (it dropped), never both. Against an honest-but-curious
server colluding with a set C of clients, each honest survivor's input stays hidden inside the sum
of its connected component of the graph induced on honest survivors, provided every neighbourhood
holds fewer than t members of C (else C's shares rebuild both secrets). H(k, n) is k-connected, so
while fewer than k nodes are dropped or corrupt that component is every honest survivor: the
server learns only the total. Against a server that lies about who dropped, two disjoint sets of t
holders would be needed to rebuild both secrets of one node; 2t > k + 1 rules that out when no
holder colludes (with c colluding holders in a neighbourhood it needs 2t > k + 1 + c). The seed is
the server's: a malicious server could grind it to pick neighbourhoods; the threat model here is a
curious server and Flower-authenticated nodes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from fedpriv.secagg.crypto import encode_id


DEFAULT_DROPOUT_TOLERANCE = 0.3  # δ: the dropout rate after key sharing the default degree is sized for
DEFAULT_FAILURE_PROBABILITY = 1e-4  # η: chance that such dropouts leave some neighbourhood short


def majority_threshold(degree: int) -> int:
    """Smallest t with 2t > k + 1: a strict majority of a node's k + 1 share holders."""
    return (degree + 1) // 2 + 1


def neighbourhood_failure_bound(num_participants: int, degree: int, dropout: float) -> float:
    """n · P[Binomial(k, δ) > k − t]: a bound on the chance that independent dropouts at rate δ leave
    some node with fewer than t surviving share holders."""
    k, t = degree, majority_threshold(degree)
    tail = sum(math.comb(k, j) * dropout**j * (1 - dropout) ** (k - j) for j in range(k - t + 1, k + 1))
    return num_participants * tail


def default_degree(num_participants: int, dropout: float = DEFAULT_DROPOUT_TOLERANCE,
                   failure: float = DEFAULT_FAILURE_PROBABILITY) -> int:
    """The smallest even degree (at least 2⌈log₂ n⌉) that survives dropouts at rate ``dropout`` except
    with probability ``failure``; n − 1 (the complete graph) when no sparser one does."""
    n = num_participants
    if n < 2:
        raise ValueError(f"secure aggregation needs at least 2 participants, got {n}")
    if not 0.0 <= dropout < 0.5:
        raise ValueError(f"a majority threshold tolerates a dropout rate in [0, 0.5), got {dropout}")
    if not 0.0 < failure < 1.0:
        raise ValueError(f"the failure probability must be in (0, 1), got {failure}")
    k = 2 * math.ceil(math.log2(n))
    while k < n - 1 and neighbourhood_failure_bound(n, k, dropout) > failure:
        k += 2
    return min(k, n - 1)


def check_graph_parameters(num_participants: int, degree: int, threshold: int) -> None:
    """Raise ValueError unless (n, k, t) is a valid SecAgg+ configuration."""
    n = num_participants
    if n < 2:
        raise ValueError(f"secure aggregation needs at least 2 participants, got {n}")
    if not 1 <= degree <= n - 1:
        raise ValueError(f"degree must be in 1..{n - 1} for {n} participants, got {degree}")
    if degree != n - 1 and degree % 2:
        raise ValueError(f"a Harary graph needs an even degree below n - 1, got {degree} for {n} participants")
    if not majority_threshold(degree) <= threshold <= degree + 1:
        raise ValueError(
            f"threshold must be a strict majority of the {degree + 1} share holders "
            f"({majority_threshold(degree)}..{degree + 1}), got {threshold}"
        )


@dataclass(frozen=True)
class CommunicationGraph:
    """Who shares with and masks against whom. ``participants`` are kept sorted."""

    participants: tuple[int, ...]
    seed: bytes
    degree: int
    _neighbours: dict[int, frozenset[int]] = field(init=False, repr=False, compare=False)
    _x: dict[int, int] = field(init=False, repr=False, compare=False)
    ring: tuple[int, ...] = field(init=False, repr=False, compare=False)  # the seeded order of the ring

    @classmethod
    def build(cls, participants: Iterable[int], seed: bytes, degree: int | None = None) -> CommunicationGraph:
        """``degree`` None: ``default_degree`` for the number of participants."""
        ordered = tuple(sorted(int(p) for p in participants))
        return cls(ordered, seed, default_degree(len(ordered)) if degree is None else degree)

    def __post_init__(self) -> None:
        n = len(self.participants)
        if len(set(self.participants)) != n:
            raise ValueError("participants must be distinct")
        check_graph_parameters(n, self.degree, majority_threshold(self.degree))
        ring = sorted(self.participants, key=lambda p: hashlib.sha256(self.seed + encode_id(p)).digest())
        if self.degree == n - 1:
            neighbours = {p: frozenset(q for q in ring if q != p) for p in ring}
        else:
            half = self.degree // 2
            neighbours = {
                p: frozenset(ring[(i + off) % n] for off in range(-half, half + 1) if off) for i, p in enumerate(ring)
            }
        object.__setattr__(self, "_neighbours", neighbours)
        object.__setattr__(self, "ring", tuple(ring))
        object.__setattr__(self, "_x", {p: i + 1 for i, p in enumerate(self.participants)})

    def neighbours(self, node_id: int) -> frozenset[int]:
        """N(node): the node's k neighbours (itself excluded)."""
        return self._neighbours[node_id]

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._neighbours

    def x_coordinate(self, node_id: int) -> int:
        """The node's Shamir evaluation point: 1 + its index among the sorted participants."""
        return self._x[node_id]
