"""Golden replays: the pipelines of ``tests/goldens/golden.py`` must give exactly their
recorded ``tests/goldens/*.jsonl`` (boxes at 0.1 px, confidences at 0.01).

These tests never write the goldens; ``python scripts/update_goldens.py`` does, and the
new files are reviewed and committed with the change that caused them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import require_data
from goldens import golden

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("spec", golden.SPECS, ids=[s.name for s in golden.SPECS])
def test_replay_matches_golden(spec: golden.GoldenSpec, tmp_path: Path) -> None:
    """The replay's tracks equal the golden frame for frame; the golden's meta file
    records what the replay source emitted, and this run emits the same."""
    for d in spec.data:
        require_data(d)
    expected = golden.read(spec)
    assert expected is not None, f"{spec.path} missing: run python scripts/update_goldens.py"
    meta = json.loads(spec.meta_path.read_text())
    actual, replay = golden.run(spec, tmp_path)
    report = golden.diff(expected, actual, meta)
    if report is not None:
        pytest.fail(f"{spec.name}: {report}", pytrace=False)
    assert replay == meta["replay"]


def test_diff_report_names_the_first_differing_frame_side_by_side() -> None:
    """The mismatch report: count of differing frames, the first one's track rows side
    by side (changed rows marked), frames missing on either side."""
    a = [
        '{"seq":0,"pts_s":0.0,"tracks":[[1,1.0,2.0,3.0,4.0,0.9,0]]}',
        '{"seq":1,"pts_s":0.1,"tracks":[[1,1.5,2.0,3.0,4.0,0.9,0],[2,5.0,5.0,9.0,9.0,0.8,0]]}',
        '{"seq":2,"pts_s":0.2,"tracks":[]}',
    ]
    b = [a[0], '{"seq":1,"pts_s":0.1,"tracks":[[1,1.6,2.0,3.0,4.0,0.9,0]]}']
    assert golden.diff(a, list(a)) is None
    report = golden.diff(a, b)
    assert report is not None
    lines = report.splitlines()
    assert lines[0].startswith("2 of 3 frames differ (1 only in the golden, 0 only in this run)")
    assert "first at seq 1" in lines[0]
    assert lines[1].split() == ["golden", "|", "this", "run"]
    assert lines[2].startswith("*") and "#1" in lines[2] and "1.5" in lines[2] and "1.6" in lines[2]
    assert lines[3].startswith("*") and "#2" in lines[3]
    assert "differing seqs: 1, 2" in report
