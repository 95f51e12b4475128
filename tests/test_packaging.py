"""What a user installs: the wheel has its license and every package; the README links inside."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "oneclickdz"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The project's wheel, built as pip builds it for an install."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("oneclickdz-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_carries_the_mit_license(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    (license_file,) = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/licenses/LICENSE", n)]
    text = wheel.read(license_file).decode()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 oneclickdz maintainers" in text
    assert text == (ROOT / "LICENSE").read_text()
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    headers = wheel.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    assert "License-Expression: MIT" in headers
    assert "License-File: LICENSE" in headers


def test_every_package_of_the_source_is_a_regular_package_in_the_wheel(
    wheel: zipfile.ZipFile,
) -> None:
    packages = sorted(
        d.relative_to(PACKAGE.parent).as_posix()
        for d in [PACKAGE, *PACKAGE.rglob("*")]
        if d.is_dir() and any(d.glob("*.py"))
    )
    assert "oneclickdz/server" in packages
    names = set(wheel.namelist())
    assert [p for p in packages if f"{p}/__init__.py" not in names] == []
    assert {f"{p}/{f.name}" for p in packages for f in (PACKAGE.parent / p).glob("*.py")} <= names


def test_the_server_package_imports_nothing_heavy() -> None:
    code = (
        "import sys, oneclickdz.server, oneclickdz.server.config; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'starlette', 'uvicorn', 'cryptography', 'orjson', 'prometheus_client'}))"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "[]"
    import oneclickdz.server

    assert oneclickdz.server.__doc__


MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""")
PATH_OUTSIDE = re.compile(r"(?<![\w/.])\.\./[\w./-]+")


def test_the_readme_links_only_to_files_inside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = MARKDOWN_LINK.findall(readme) + HTML_LINK.findall(readme)
    local = [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t, re.IGNORECASE)]
    for target in local:
        path = (ROOT / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT), f"README links outside the repository: {target}"
        assert path.exists(), f"README links to a missing file: {target}"
    # A path written out (in code) to a file beside the repository is as broken for a reader.
    assert PATH_OUTSIDE.findall(readme) == []
