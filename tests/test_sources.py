"""The package's sources stand alone: no comment or docstring points to notes outside this repository."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Private reading notes of the paper, not shipped: cite the paper (v2 Sec./App./Table/Eq.) or the released code.
PRIVATE_NOTES = "DIGEST"


def pointers_to_private_notes(root: Path) -> list[str]:
    """`path:line` of every line under `root` that names the private notes."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        try:
            lines = path.read_text().splitlines()
        except UnicodeDecodeError:
            continue
        found += [f"{path.relative_to(root.parent)}:{i}" for i, line in enumerate(lines, 1) if PRIVATE_NOTES in line]
    return found


@pytest.mark.parametrize("folder", ["reasoning_sae", "conf"])
def test_no_source_points_to_the_private_notes(folder):
    assert not pointers_to_private_notes(ROOT / folder)


def test_the_check_finds_a_pointer(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text('"""Fine."""\n# as DIGEST 6.3 says\n')
    (tmp_path / "pkg" / "b.bin").write_bytes(b"\xff\xfe DIGEST")
    assert pointers_to_private_notes(tmp_path / "pkg") == ["pkg/a.py:2"]
