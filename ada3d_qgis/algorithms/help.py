"""Help texts of the algorithms: paragraphs as the help panel shows them, and
the user guide the dialog's Help button opens."""

from __future__ import annotations

import configparser
import re
from functools import lru_cache
from pathlib import Path

_PLUGIN = Path(__file__).resolve().parents[1]
#: The user guide, relative to the project's homepage (a repository).
USER_GUIDE = "blob/main/docs/user-guide.md"


def paragraphs(text: str) -> str:
    """Source text wrapped at any width, as the help panel should show it: the
    help panel keeps line breaks, so the lines of a paragraph (up to a blank
    line) are joined."""
    blocks = re.split(r"\n\s*\n", text.strip())
    return "\n".join(" ".join(line.strip() for line in b.splitlines()) for b in blocks)


@lru_cache(maxsize=1)
def homepage() -> str:
    """The homepage named in metadata.txt (inside the installed plugin, or
    beside the package in a source checkout)."""
    for path in (_PLUGIN / "metadata.txt", _PLUGIN.parent / "metadata.txt"):
        if path.is_file():
            parser = configparser.ConfigParser(interpolation=None)
            parser.read(path, encoding="utf-8")
            return parser.get("general", "homepage", fallback="").rstrip("/")
    return ""


def guide_url(anchor: str) -> str:
    """The user guide's section ``anchor`` (GitHub's heading anchors)."""
    base = homepage()
    return f"{base}/{USER_GUIDE}#{anchor}" if base else ""
