#!/usr/bin/env python3
"""Rerun the golden replays and rewrite ``tests/goldens/*.jsonl`` (the only writer).

    python scripts/update_goldens.py              # every golden
    python scripts/update_goldens.py pets09_recorded_lossy
    python scripts/update_goldens.py --check      # report differences, write nothing

Each golden is run twice and written only if both runs agree byte for byte (the
goldens must be reproducible). Before writing, the differences from the current
golden are printed (first differing frame side by side, count of differing frames):
review them, and commit the new files with the change that caused them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from goldens import golden  # noqa: E402

from streamer.data import data_path  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="goldens to update (default: all)")
    p.add_argument("--check", action="store_true", help="compare only; write nothing")
    args = p.parse_args()
    specs = [golden.spec(n) for n in args.names] if args.names else list(golden.SPECS)
    status = 0
    for s in specs:
        missing = [d for d in s.data if not data_path(d).exists()]
        if missing:
            print(f"{s.name}: shared data missing ({', '.join(missing)}); set STREAMER_DATA")
            return 2
        with tempfile.TemporaryDirectory() as tmp:
            first, replay = golden.run(s, Path(tmp) / "1")
            second, _ = golden.run(s, Path(tmp) / "2")
        if first != second:
            print(f"{s.name}: two runs differ; not written:\n{golden.diff(first, second)}")
            status = 1
            continue
        old = golden.read(s)
        report = golden.diff(old, first) if old is not None else "new golden"
        if report is None:
            print(f"{s.name}: unchanged ({len(first)} frames)")
            continue
        print(f"{s.name}: {report}")
        if args.check:
            status = 1
            continue
        s.path.write_text("\n".join(first) + "\n", encoding="utf-8")
        meta = {
            "name": s.name,
            "description": s.description,
            "frames": len(first),
            "rounding": {
                "xyxy_decimals": golden.BOX_DECIMALS,
                "confidence_decimals": golden.CONF_DECIMALS,
            },
            "replay": replay,
            "made_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": golden.machine(),
        }
        s.meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        print(f"{s.name}: wrote {s.path.relative_to(REPO)} ({len(first)} frames)")
    return status


if __name__ == "__main__":
    sys.exit(main())
