"""The dashboard's picture geometry, pure: the lineage layout and the chart scales."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from api.dashboard_charts import PLOT_H, TOP, ingest_chart, lag_chart, nice_ceiling
from api.dashboard_lineage import MAX_NODES, NODE_W, layers, layout
from core.events import VersionKey
from core.lag_samples import LagSample


def v(name: str, number: int = 1) -> VersionKey:
    return VersionKey("ns", name, number)


def test_every_edge_points_rightwards_one_layer_or_more() -> None:
    # raw -> clean -> model, and raw -> model directly (a skip), features -> model
    edges = [(v("raw"), v("clean")), (v("clean"), v("model")), (v("raw"), v("model")),
             (v("features"), v("model"))]
    found = layers({k for e in edges for k in e}, edges)
    assert found == {v("raw"): 0, v("features"): 0, v("clean"): 1, v("model"): 2}
    picture = layout(v("clean"), edges)
    x = {n.key: n.x for n in picture.nodes}
    assert all(x[child] >= x[parent] + NODE_W for parent, child in edges)
    assert {(a.parent, a.child) for a in picture.arrows} == set(edges)
    assert picture.left_out == 0


def test_versions_of_a_layer_do_not_overlap_and_fit_the_picture() -> None:
    edges = [(v(f"source{i}"), v("join")) for i in range(5)]
    picture = layout(v("join"), edges)
    column = sorted(n.y for n in picture.nodes if n.layer == 0)
    assert len(column) == 5
    assert all(b - a >= 46 for a, b in itertools.pairwise(column))
    assert all(n.y >= 0 and n.y + 46 <= picture.height for n in picture.nodes)
    assert all(n.x + NODE_W <= picture.width for n in picture.nodes)


def test_crossings_are_untangled_by_the_neighbours_order() -> None:
    # a1 -> b2 and a2 -> b1: sorted by name the edges would cross; barycenters swap b1, b2.
    edges = [(v("r"), v("a1")), (v("r"), v("a2")), (v("a1"), v("b2")), (v("a2"), v("b1"))]
    picture = layout(v("r"), edges)
    y = {n.key: n.y for n in picture.nodes}
    assert (y[v("a1")] < y[v("a2")]) == (y[v("b2")] < y[v("b1")])


def test_a_huge_graph_keeps_the_versions_nearest_the_root() -> None:
    edges = [(v("root"), v(f"child{i:04}")) for i in range(MAX_NODES + 20)]
    picture = layout(v("root"), edges)
    assert len(picture.nodes) == MAX_NODES
    assert picture.left_out == 21  # 1 root + MAX_NODES + 20 children - MAX_NODES drawn
    assert v("root") in {n.key for n in picture.nodes}


def test_versions_cut_off_from_the_root_are_counted_not_drawn() -> None:
    # what a namespace-limited token sees when the version in between is hidden
    picture = layout(v("root"), [(v("root"), v("child")), (v("far"), v("farther"))])
    assert {n.key for n in picture.nodes} == {v("root"), v("child")}
    assert (picture.detached, picture.left_out) == (2, 0)


def test_a_lone_version_is_a_one_node_picture() -> None:
    picture = layout(v("alone"), [])
    assert [n.key for n in picture.nodes] == [v("alone")]
    assert picture.arrows == []


def test_chart_scales_round_up_to_readable_numbers() -> None:
    assert [nice_ceiling(x) for x in (0, 1, 3, 7, 10, 11, 240, 5001)] == [
        1, 1, 5, 10, 10, 20, 500, 10000]


def test_ingest_bars_are_proportional_to_the_counts() -> None:
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    counts = [(start + timedelta(minutes=i), n) for i, n in enumerate([0, 5, 10, 2])]
    chart = ingest_chart(counts)
    assert [round(b.height, 1) for b in chart.bars] == [0, PLOT_H / 2, PLOT_H, PLOT_H / 5]
    assert chart.bars[2].y == TOP
    assert chart.bars[1].title == "12:01 UTC: 5 ingests"
    assert not chart.empty
    assert ingest_chart([(start, 0)]).empty


def test_a_gap_in_the_samples_breaks_the_lag_line() -> None:
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    times = [0, 15, 30, 300, 315, 600]  # the sampler was down twice
    samples = [LagSample(start + timedelta(seconds=t), "version_history", t // 15, None)
               for t in times]
    chart = lag_chart(samples, start, start + timedelta(minutes=10))
    [line] = chart.lines
    assert [len(segment.split()) for segment in line.segments] == [3, 2]
    assert len(line.dots) == 1  # the last sample stands alone
    assert line.latest == 40
