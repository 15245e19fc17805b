"""Citations of the project's notes never dangle.

Guards the defect where code comments cited protocol and design notes that were not in the
repository: every `docs/<name>.md` cited anywhere in the repository must exist, every section
number cited with it ("docs/flexvolume.md section 8.5", "sections 3 to 6, 9") must be a
numbered heading of that file (or, for N.M, item M of a numbered list in section N), and the
old names of notes kept outside the repository are cited nowhere.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", "results", "node_modules", ".ruff_cache",
             ".pytest_cache", "build", "dist"}
NUMBER = r"\d+(?:\.\d+)?"
CITATION = re.compile(rf"docs/([A-Za-z0-9_-]+\.md)(?: sections? ({NUMBER}(?:(?:, | and | to ){NUMBER})*))?")
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)?)\.?\s")
LIST_ITEM = re.compile(r"^\s*(\d+)\.\s")
# Built from parts so that this file does not cite them itself.
OUTSIDE_NOTES = ("FLEXVOLUME" + ".md", "DESIGN" + ".md")


@functools.cache
def text_files() -> tuple[tuple[Path, str], ...]:
    """Every text file of the repository and its content, read once for all the tests."""
    found = []
    for directory, subdirs, names in os.walk(REPO):
        subdirs[:] = [name for name in subdirs if name not in SKIP_DIRS and not name.endswith(".egg-info")]
        for name in names:
            path = Path(directory, name)
            try:
                found.append((path, path.read_text(encoding="utf-8")))
            except (UnicodeDecodeError, OSError):
                continue
    return tuple(found)


def sections(doc: Path) -> set[str]:
    """The numbers a doc defines: 'N' for a heading 'N. Title', 'N.M' for a heading 'N.M Title'
    or for item 'M.' of a numbered list inside section N."""
    numbers: set[str] = set()
    current = ""
    in_code = False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        heading = HEADING.match(line)
        if heading:
            numbers.add(heading.group(1))
            if "." not in heading.group(1):
                current = heading.group(1)
            continue
        if line.startswith("#"):
            current = ""
            continue
        item = LIST_ITEM.match(line)
        if item and current:
            numbers.add(f"{current}.{item.group(1)}")
    return numbers


def cited_numbers(text: str) -> list[str]:
    """'3 to 6, 8.7 and 10' -> ['3', '4', '5', '6', '8.7', '10']."""
    numbers: list[str] = []
    parts = re.split(r"(, | and | to )", text)
    previous = ""
    for index, part in enumerate(parts):
        if index % 2 == 1:
            continue
        if index >= 2 and parts[index - 1] == " to " and "." not in part and "." not in previous:
            numbers.extend(str(n) for n in range(int(previous) + 1, int(part) + 1))
        else:
            numbers.append(part)
        previous = part
    return numbers


def citations() -> list[tuple[str, str, str]]:
    """(where, doc name, numbers text) for every citation in the repository."""
    found = []
    for path, text in text_files():
        for number, line in enumerate(text.splitlines(), 1):
            for match in CITATION.finditer(line):
                found.append((f"{path.relative_to(REPO)}:{number}", match.group(1), match.group(2) or ""))
    return found


def test_cited_numbers_expand_ranges_and_lists() -> None:
    assert cited_numbers("3 to 6, 8.7, 9 and 10") == ["3", "4", "5", "6", "8.7", "9", "10"]
    assert cited_numbers("2") == ["2"]


def test_every_cited_doc_exists() -> None:
    found = citations()
    assert len(found) > 40, "the citation pattern no longer finds the code's citations"
    missing = sorted({f"{where}: docs/{doc}" for where, doc, _ in found
                      if not (REPO / "docs" / doc).is_file()})
    assert not missing, f"citations of docs that do not exist: {missing}"


def test_every_cited_section_exists() -> None:
    defined: dict[str, set[str]] = {}
    dangling = []
    for where, doc, numbers in citations():
        if not numbers or not (REPO / "docs" / doc).is_file():
            continue
        if doc not in defined:
            defined[doc] = sections(REPO / "docs" / doc)
        for number in cited_numbers(numbers):
            if number not in defined[doc]:
                dangling.append(f"{where}: docs/{doc} section {number}")
    assert not dangling, f"citations of sections that do not exist: {dangling}"


def test_docs_define_the_sections_the_code_relies_on() -> None:
    assert {"1", "2", "3", "4", "4.5", "5", "6", "7", "8.1", "8.8", "9", "10"} <= \
        sections(REPO / "docs" / "flexvolume.md")
    assert {str(n) for n in range(1, 11)} <= sections(REPO / "docs" / "design.md")


def test_notes_outside_the_repository_are_not_cited() -> None:
    stale = []
    for path, text in text_files():
        for number, line in enumerate(text.splitlines(), 1):
            # Case matters: the repository's own notes are lower case (docs/design.md).
            if any(name in line for name in OUTSIDE_NOTES):
                stale.append(f"{path.relative_to(REPO)}:{number}")
    assert not stale, f"citations of notes that are not in the repository: {stale}"
