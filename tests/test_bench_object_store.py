"""Figure 9 of the harness (bench/object_store.py) runs and writes its line: a smoke run with
a directory and a bucket on moto's S3 server. It asserts the harness works, not a speed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke_object_store_compares_a_bucket_with_a_directory(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    cmd = [sys.executable, "-m", "bench", "--smoke", "--no-install", "--only", "objectstore"]
    cmd += ["--out", str(out), "--workdir", str(tmp_path / "work")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in out.read_text().splitlines() if x.startswith("9. "))
    found = re.search(
        r"\*\*([\d,]+) jobs/s\*\*, in a local directory ([\d,]+) jobs/s.*\*\*([\d.]+)x\*\*", line
    )
    assert found is not None, line
    bucket, local, ratio = found.groups()
    assert float(ratio) > 0
    assert int(bucket.replace(",", "")) > 0 and int(local.replace(",", "")) > 0
