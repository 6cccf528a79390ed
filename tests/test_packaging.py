"""The wheel `pip install .` builds holds every subpackage: an editable install would hide a missing one."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_every_package_of_the_source_tree(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    wheel = next(tmp_path.glob("longdoc_qa-*.whl"))
    packed = {Path(n).parent.as_posix() for n in zipfile.ZipFile(wheel).namelist() if n.endswith("__init__.py")}
    source = {p.parent.relative_to(ROOT).as_posix() for top in ("app", "ingest", "index", "ui")
              for p in (ROOT / top).rglob("__init__.py")}
    assert source and source <= packed, f"missing from the wheel: {sorted(source - packed)}"
