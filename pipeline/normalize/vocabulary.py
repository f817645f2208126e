"""Section vocabulary: maps headings as written to canonical section keys.

The aliases live in ``vocabulary.toml`` beside this module so an analyst can extend them without
code; ``PROCPIPE_VOCABULARY`` may point at another file. Matching ignores case, punctuation,
a trailing colon, and "&" versus "and". ``VOCABULARY_VERSION`` (a hash of the file) is part of
the parser version, so a vocabulary change reprocesses everything.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("vocabulary.toml")
_NON_WORD = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=8192)
def heading_norm(text: str) -> str:
    """The matching form of a heading: lower case, "&" as "and", words joined by single spaces.

    Cached: the same few hundred headings recur on every page and are looked up several times each
    (diagnosis check, section key, template check, text front ends)."""
    t = text.lower().replace("&", " and ")
    return " ".join(_NON_WORD.split(t)).strip()


@dataclass(frozen=True)
class Vocabulary:
    procedure: dict[str, str]  # normalized alias -> key
    condition: dict[str, str]
    version: str

    def key(self, heading: str) -> str | None:
        """Canonical procedure key for a heading, or None."""
        return self.procedure.get(heading_norm(heading))

    def condition_key(self, heading: str) -> str | None:
        """Canonical key of a diagnosis-page heading that is not also a procedure heading."""
        n = heading_norm(heading)
        if n in self.procedure:
            return None
        return self.condition.get(n)

    def is_heading(self, text: str) -> bool:
        """True when the text is a known heading of either kind (used by the text front ends)."""
        n = heading_norm(text)
        return n in self.procedure or n in self.condition


def _load(path: Path) -> Vocabulary:
    raw = path.read_bytes()
    data = tomllib.loads(raw.decode("utf-8"))
    maps: dict[str, dict[str, str]] = {"procedure": {}, "condition": {}}
    for kind in maps:
        for key, aliases in data.get(kind, {}).items():
            maps[kind][heading_norm(key.replace("_", " "))] = key
            for alias in aliases:
                maps[kind][heading_norm(alias)] = key
    return Vocabulary(maps["procedure"], maps["condition"], hashlib.sha256(raw).hexdigest()[:12])


@lru_cache(maxsize=4)
def load_vocabulary(path: str | None = None) -> Vocabulary:
    """The vocabulary from ``path``, ``$PROCPIPE_VOCABULARY`` or the bundled file (cached)."""
    return _load(Path(path or os.environ.get("PROCPIPE_VOCABULARY") or DEFAULT_PATH))


def heading_key(text: str) -> str | None:
    """Canonical procedure section key of a heading (bundled vocabulary), or None."""
    return load_vocabulary().key(text)


def is_known_heading(text: str) -> bool:
    return load_vocabulary().is_heading(text)
