"""docs/FORMATS.md is generated from the declarations and must not drift from them."""
from pathlib import Path

from suspendos.formats import docs


def test_formats_doc_is_current():
    path = Path(__file__).resolve().parent.parent / "docs" / "FORMATS.md"
    assert path.read_text() == docs.generate(), \
        "docs/FORMATS.md is stale: run python -m suspendos.formats.docs > docs/FORMATS.md"
