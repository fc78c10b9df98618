"""The streaming records diff: through DiffService over stored versions, and its time and
peak memory on large CSV versions, measured in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.commands import IngestVersion, VersionRef
from core.comparison import DiffService
from core.services import ArtifactService

ROOT = Path(__file__).resolve().parents[2]

# The child: diff two CSV files keyed by id with the core function, print the figures. Peak
# RSS is VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so the child
# would report pytest's own peak. The raw bytes of both versions count in it, as they would
# in the server (which holds them from the content store).
MEASURE = """
import json, sys, time
from pathlib import Path
from core.diff import collect
from core.records_diff import Dataset, records_diff

before, after = Path(sys.argv[1]).read_bytes(), Path(sys.argv[2]).read_bytes()
wall, cpu = time.perf_counter(), time.process_time()
found = collect(records_diff(Dataset(before, "csv", "before"), Dataset(after, "csv", "after"),
                             ["id"]), 10_000)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
status = Path("/proc/self/status").read_text().splitlines()
[peak] = [int(line.split()[1]) for line in status if line.startswith("VmHWM:")]
print(json.dumps({"seconds": wall, "cpu_seconds": cpu, "peak_rss_mb": peak / 1024,
                  "summary": found.summary, "total": found.total, "kept": len(found.changes),
                  "truncated": found.truncated}))
"""


def write_versions(directory: Path, rows: int) -> tuple[Path, Path]:
    """id,name,amount,updated; the second version changes 1% of the rows (amount), removes
    0.5% and adds 0.5%."""
    paths = directory / f"before-{rows}.csv", directory / f"after-{rows}.csv"
    for path, second in zip(paths, (False, True), strict=True):
        with path.open("w", newline="") as out:
            out.write("id,name,amount,updated\n")
            for i in range(rows):
                if second and i % 200 == 0:
                    continue
                units = (i * 7) % 10_000 + (1 if second and i % 100 == 1 else 0)
                out.write(f"{i},name-{i},{units}.{i % 100:02d},2024-01-{i % 28 + 1:02d}T00:00Z\n")
            for i in range(rows, rows + rows // 200 if second else rows):
                out.write(f"{i},name-{i},{i % 1000}.5,2024-02-01T00:00Z\n")
    return paths


LONG = pytest.mark.skipif(not os.environ.get("ARTIFACTLOG_LONG"), reason=(
    "the 1,000,000-row diff runs with ARTIFACTLOG_LONG=1 (about 20 s)"))


@pytest.mark.parametrize("rows", [20_000, pytest.param(1_000_000, marks=LONG)])
def test_a_million_rows(rows: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 7's goal is <= 20 s and <= 500 MB peak RSS for 1,000,000 rows. Storing such
    versions needs ARTIFACTLOG_MAX_CONTENT_BYTES raised above their size (about 46 MiB here;
    the default is 16 MiB); the measurement calls the core function on the bytes directly."""
    before, after = write_versions(tmp_path, rows)
    done = subprocess.run([sys.executable, "-c", MEASURE, str(before), str(after)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    with capsys.disabled():
        print(f"\n{rows:,} rows per version: {figures['seconds']:.1f} s wall,"
              f" {figures['cpu_seconds']:.1f} s CPU, peak RSS {figures['peak_rss_mb']:.0f} MB,"
              f" {figures['summary']}")
    changes = {"added": rows // 200, "removed": rows // 200, "changed": rows // 100}
    assert figures["summary"] == {"records": changes}
    assert figures["total"] == sum(changes.values())
    assert figures["kept"] == min(figures["total"], 10_000)
    assert figures["truncated"] is (figures["total"] > 10_000)
    if rows == 1_000_000:
        assert figures["peak_rss_mb"] <= 500
        # CPU, not wall time: the wall clock also counts whatever else shares the machine.
        assert figures["cpu_seconds"] <= 20


async def ingest(service: ArtifactService, ns: str, name: str, **fields: Any) -> VersionRef:
    result = await service.ingest(IngestVersion(ns, name, kind="dataset", **fields))
    return VersionRef(ns, name, result.version.number)


@pytest.mark.anyio
async def test_csv_ndjson_and_json_versions_diff_as_records(service: ArtifactService,
                                                            names: str) -> None:
    csv_one = await ingest(service, names, "sales", text="id,amount\n1,10\n2,20\n",
                           media_type="text/csv", metadata={"key": "id"})
    csv_two = await ingest(service, names, "sales", text="id,amount,note\n2,25,x\n3,30,y\n",
                           media_type="text/csv", metadata={"key": "id"})
    found = await DiffService(service).diff(csv_one, csv_two)
    assert found.summary == {"schema": {"add": 1},
                             "records": {"added": 1, "changed": 1, "removed": 1}}
    assert [(c.op, c.path) for c in found.changes if c.section == "records"] == [
        ("changed", "2"), ("added", "3"), ("removed", "1")]
    # Across artifacts and formats: another's NDJSON (declared by metadata) and JSON.
    ndjson = await ingest(service, names, "other", text='{"id":2,"amount":20}\n',
                          metadata={"format": "ndjson"})
    against_csv = await DiffService(service).diff(csv_one, ndjson, key=["id"])
    assert against_csv.summary == {"metadata": {"add": 1, "remove": 1},  # format; key
                                   "records": {"removed": 1}}
    json_rows = await ingest(service, names, "third", content=[{"id": 2, "amount": 20}])
    same_rows = await DiffService(service).diff(ndjson, json_rows, key=["id"])
    assert same_rows.summary == {"metadata": {"remove": 1}}  # /format; no row differs


@pytest.mark.anyio
async def test_a_diff_keeps_a_bounded_prefix_and_counts_the_rest(service: ArtifactService,
                                                                 names: str) -> None:
    one = await ingest(service, names, "big", content=[{"id": i, "v": 0} for i in range(30)])
    two = await ingest(service, names, "big", content=[{"id": i, "v": 1} for i in range(30)],
                       metadata={"key": "id", "run": 2})
    found = await DiffService(service, max_changes=5).diff(one, two)
    assert found.summary == {"metadata": {"add": 2}, "records": {"changed": 30}}
    assert (found.total, len(found.changes), found.truncated) == (32, 5, True)
    assert [c.path for c in found.changes] == ["/key", "/run", "0", "1", "2"]
