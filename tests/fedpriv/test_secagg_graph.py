"""SecAgg+'s communication graph: degree, regularity, the public seed, k-connectivity, threshold."""

from __future__ import annotations

import itertools
import os

import pytest

from fedpriv.secagg.graph import (
    CommunicationGraph,
    check_graph_parameters,
    default_degree,
    majority_threshold,
)
from tests.fake_secagg import node_ids


def test_default_degree_is_logarithmic_and_complete_for_small_rounds():
    assert [default_degree(n) for n in (2, 3, 5, 10, 20, 50, 100, 1000)] == [1, 2, 4, 9, 14, 18, 20, 30]
    assert [majority_threshold(k) for k in (1, 2, 9, 18, 30)] == [2, 2, 6, 10, 16]


@pytest.mark.parametrize("n", [3, 10, 20, 50, 101])
def test_graph_is_regular_symmetric_and_fixed_by_the_seed(n):
    nodes = node_ids(n, seed=n)
    seed = os.urandom(32)
    graph = CommunicationGraph.build(nodes, seed)
    k = default_degree(n)
    for i in nodes:
        assert len(graph.neighbours(i)) == k and i not in graph.neighbours(i)
        assert all(i in graph.neighbours(j) for j in graph.neighbours(i))
    # A client recomputing the graph from the setup message gets the same one.
    again = CommunicationGraph.build(reversed(nodes), seed)
    assert all(graph.neighbours(i) == again.neighbours(i) for i in nodes)
    assert sorted(graph.x_coordinate(i) for i in nodes) == list(range(1, n + 1))
    if k < n - 1:
        other = CommunicationGraph.build(nodes, os.urandom(32))
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
