"""SecAgg+'s communication graph: degree, regularity, the public seed, k-connectivity, threshold."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from fedpriv.secagg.graph import (
    CommunicationGraph,
    check_graph_parameters,
    default_degree,
    majority_threshold,
    neighbourhood_failure_bound,
)
from tests.fake_secagg import node_ids


def test_default_degree_meets_its_dropout_bound_and_grows_logarithmically():
    assert [default_degree(n) for n in (2, 3, 5, 10, 20, 50, 100)] == [1, 2, 4, 9, 19, 49, 99]  # complete
    sparse = {n: default_degree(n) for n in (200, 1000, 10_000, 100_000)}
    assert sparse == {200: 142, 1000: 160, 10_000: 186, 100_000: 212}  # +26 per factor of 10
    for n, k in sparse.items():
        assert neighbourhood_failure_bound(n, k, 0.3) <= 1e-4 < neighbourhood_failure_bound(n, k - 2, 0.3)
    # Without dropouts only the 2⌈log₂ n⌉ floor remains; more dropouts need more neighbours.
    assert default_degree(1000, dropout=0.0) == 20
    assert default_degree(1000, dropout=0.1) < default_degree(1000) < default_degree(1000, dropout=0.4)
    assert [majority_threshold(k) for k in (1, 2, 9, 18, 49)] == [2, 2, 6, 10, 26]
    with pytest.raises(ValueError, match="dropout rate"):
        default_degree(10, dropout=0.5)


def test_the_failure_bound_matches_simulated_dropouts():
    """Independent 30% dropouts on a sparse graph leave some neighbourhood short no more often than
    the union bound says (here 0.50; simulated about 0.07: the bound is safe, not tight)."""
    rng = np.random.default_rng(0)
    n, k = 80, 40
    graph = CommunicationGraph.build(range(1, n + 1), bytes(32), degree=k)
    t = majority_threshold(k)
    trials, failures = 1000, 0
    for _ in range(trials):
        alive = {i for i in graph.participants if rng.random() >= 0.3}
        failures += any(len(graph.neighbours(i) & alive) < t for i in graph.participants)
    bound = neighbourhood_failure_bound(n, k, 0.3)
    assert 0.02 < failures / trials <= bound


@pytest.mark.parametrize(("n", "degree"), [(3, None), (10, None), (50, 18), (101, 20), (300, None)])
def test_graph_is_regular_symmetric_and_fixed_by_the_seed(n, degree):
    nodes = node_ids(n, seed=n)
    seed = os.urandom(32)
    graph = CommunicationGraph.build(nodes, seed, degree)
    k = default_degree(n) if degree is None else degree
    for i in nodes:
        assert len(graph.neighbours(i)) == k and i not in graph.neighbours(i)
        assert all(i in graph.neighbours(j) for j in graph.neighbours(i))
    # A client recomputing the graph from the setup message gets the same one.
    again = CommunicationGraph.build(reversed(nodes), seed, degree)
    assert all(graph.neighbours(i) == again.neighbours(i) for i in nodes)
    assert sorted(graph.x_coordinate(i) for i in nodes) == list(range(1, n + 1))
    if k < n - 1:
        other = CommunicationGraph.build(nodes, os.urandom(32), degree)
        assert any(graph.neighbours(i) != other.neighbours(i) for i in nodes)


def _connected(graph: CommunicationGraph, alive: set[int]) -> bool:
    start = next(iter(alive))
    seen, todo = {start}, [start]
    while todo:
        for j in graph.neighbours(todo.pop()) & alive:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return seen == alive


def test_removing_fewer_than_k_nodes_keeps_the_graph_connected():
    """H(k, n) is k-connected: the security argument's condition."""
    nodes = list(range(1, 15))
    graph = CommunicationGraph.build(nodes, os.urandom(32), degree=4)
    for removed in itertools.combinations(nodes, 3):
        assert _connected(graph, set(nodes) - set(removed))


def test_invalid_parameters_are_refused():
    check_graph_parameters(10, 9, 6)
    check_graph_parameters(50, 18, 10)
    with pytest.raises(ValueError, match="strict majority"):
        check_graph_parameters(10, 9, 5)  # a server could gather both secrets of a node
    with pytest.raises(ValueError, match="even degree"):
        check_graph_parameters(50, 17, 10)
    with pytest.raises(ValueError, match="degree must be"):
        check_graph_parameters(10, 10, 6)
    with pytest.raises(ValueError, match="at least 2"):
        check_graph_parameters(1, 1, 1)
    with pytest.raises(ValueError, match="distinct"):
        CommunicationGraph((1, 1, 2), bytes(32), 2)
