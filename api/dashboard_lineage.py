"""Layered layout of a lineage graph, left to right, for the dashboard's SVG picture.

Lineage is a DAG (a version's parents exist before it), so each version gets the layer of the
longest path reaching it from a source: every edge then points rightwards. Within a layer,
versions are ordered by the mean position of their neighbours in the previous layer, then in
the next (one barycenter sweep each way), which untangles the common shapes (chains, fan-in,
fan-out) without a layout engine.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.events import VersionKey

NODE_W, NODE_H = 210, 46
GAP_X, GAP_Y, PAD = 70, 18, 16
MAX_NODES = 150  # more would not be readable; the page says what it left out

Edge = tuple[VersionKey, VersionKey]  # (parent, child)


@dataclass(frozen=True)
class Placed:
    key: VersionKey
    x: float
    y: float
    layer: int


@dataclass(frozen=True)
class Arrow:
    parent: VersionKey
    child: VersionKey
    path: str  # SVG path data, a curve from the parent's right side to the child's left


@dataclass(frozen=True)
class Layout:
    width: float
    height: float
    nodes: list[Placed]
    arrows: list[Arrow]
    left_out: int  # versions beyond MAX_NODES, farthest from the root first
    detached: int  # versions no longer connected to the root (the versions between hidden)


def nearest(root: VersionKey, edges: Sequence[Edge], limit: int | None) -> set[VersionKey]:
    """The ``limit`` versions closest to ``root`` (all with None), walking edges either way."""
    neighbours: dict[VersionKey, set[VersionKey]] = defaultdict(set)
    for parent, child in edges:
        neighbours[parent].add(child)
        neighbours[child].add(parent)
    seen, queue = {root}, deque([root])
    while queue and (limit is None or len(seen) < limit):
        for other in sorted(neighbours[queue.popleft()], key=_order):
            if other not in seen and (limit is None or len(seen) < limit):
                seen.add(other)
                queue.append(other)
    return seen


def layers(keys: Iterable[VersionKey], edges: Sequence[Edge]) -> dict[VersionKey, int]:
    """Longest-path layering (Kahn's topological order)."""
    layer = dict.fromkeys(keys, 0)
    children: dict[VersionKey, list[VersionKey]] = defaultdict(list)
    waiting = dict.fromkeys(layer, 0)
    for parent, child in edges:
        children[parent].append(child)
        waiting[child] += 1
    ready = deque(sorted((k for k, n in waiting.items() if n == 0), key=_order))
    while ready:
        key = ready.popleft()
        for child in children[key]:
            layer[child] = max(layer[child], layer[key] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return layer


def ordered(layer: dict[VersionKey, int], edges: Sequence[Edge]) -> list[list[VersionKey]]:
    columns: list[list[VersionKey]] = [[] for _ in range(max(layer.values(), default=0) + 1)]
    for key in sorted(layer, key=_order):
        columns[layer[key]].append(key)
    parents: dict[VersionKey, list[VersionKey]] = defaultdict(list)
    children: dict[VersionKey, list[VersionKey]] = defaultdict(list)
    for parent, child in edges:
        parents[child].append(parent)
        children[parent].append(child)
    for sweep, neighbours in ((range(1, len(columns)), parents),
                              (range(len(columns) - 2, -1, -1), children)):
        for i in sweep:
            beside = columns[i - 1] if neighbours is parents else columns[i + 1]
            rank = {k: n for n, k in enumerate(beside)}
            columns[i].sort(key=lambda k, r=rank, nb=neighbours: _barycenter(k, nb, r))
    return columns


def layout(root: VersionKey, edges: Sequence[Edge]) -> Layout:
    """Positions for ``root`` and the versions the edges connect it to (up to MAX_NODES)."""
    everything = {root} | {k for edge in edges for k in edge}
    connected = nearest(root, edges, None)
    kept = nearest(root, edges, MAX_NODES)
    edges = [(p, c) for p, c in edges if p in kept and c in kept]
    columns = ordered(layers(kept, edges), edges)
    tallest = max(len(column) for column in columns)
    height = 2 * PAD + tallest * NODE_H + (tallest - 1) * GAP_Y
    placed: dict[VersionKey, Placed] = {}
    for i, column in enumerate(columns):
        used = len(column) * NODE_H + (len(column) - 1) * GAP_Y
        for n, key in enumerate(column):
            placed[key] = Placed(key, PAD + i * (NODE_W + GAP_X),
                                 (height - used) / 2 + n * (NODE_H + GAP_Y), i)
    arrows = [Arrow(p, c, _curve(placed[p], placed[c])) for p, c in edges]
    width = 2 * PAD + len(columns) * NODE_W + (len(columns) - 1) * GAP_X
    return Layout(width, height, list(placed.values()), arrows, len(connected - kept),
                  len(everything - connected))


def _curve(parent: Placed, child: Placed) -> str:
    x1, y1 = parent.x + NODE_W, parent.y + NODE_H / 2
    x2, y2 = child.x - 6, child.y + NODE_H / 2  # stop short: the arrowhead ends at the box
    bend = max((x2 - x1) / 2, 20)
    return (f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f}"
            f" {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}")


def _barycenter(key: VersionKey, neighbours: dict[VersionKey, list[VersionKey]],
                rank: dict[VersionKey, int]) -> float:
    ranks = [rank[k] for k in neighbours[key] if k in rank]
    return sum(ranks) / len(ranks) if ranks else float("inf")


def _order(key: VersionKey) -> tuple[str, str, int]:
    return key.namespace, key.name, key.number
