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


def test_the_installed_wheel_runs_on_its_own(tmp_path):
    """`pip install` of the wheel into a new environment, then `longdoc --help` and one ingest and retrieval from
    that copy, run outside the source tree. The heavy dependencies (torch, transformers, ...) are lent from this
    environment through a .pth file, so the test installs only the package itself."""
    import os
    import sysconfig
    import textwrap

    wheel_dir, venv, work = tmp_path / "wheel", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheel_dir), str(ROOT)], capture_output=True, text=True, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "lent-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                                str(next(wheel_dir.glob("longdoc_qa-*.whl")))], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LONGDOC_", "PYTHONPATH"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", LONGDOC_INDEX_DIR=str(tmp_path / "index"))

    helped = subprocess.run([venv / "bin" / "longdoc", "--help"], capture_output=True, text=True, cwd=work, env=env)
    assert helped.returncode == 0 and "ingest" in helped.stdout and "ask" in helped.stdout, helped.stderr

    script = textwrap.dedent(f"""
        import app
        from app import LongDocQA
        assert app.__file__.startswith({str(venv)!r}), app.__file__   # the installed copy, not the source tree
        qa = LongDocQA()
        report = qa.ingest([{str(ROOT / "sample_docs" / "ediets_co-branding_agreement.txt")!r}])
        passages = qa.retrieve("Which state's law governs the agreement?")
        print(len(report.ingested), passages[0].doc)
    """)
    ran = subprocess.run([python, "-c", script], capture_output=True, text=True, cwd=work, env=env)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.split() == ["1", "ediets_co-branding_agreement.txt"]
