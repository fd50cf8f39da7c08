"""Text that came from a file (a cache, an artifact's metadata, a state file) made safe to print on one line.

A cache or artifact can be edited by anyone: printed raw, its strings could move the terminal's
cursor, recolour it, or start a new line that reads ``error: ...`` as if this program said it.
"""

from __future__ import annotations

import unicodedata

__all__ = ["escape_text"]

# Cc: C0/C1 controls and DEL (newline, ESC, carriage return ...); Cf: format characters (bidi overrides
# that reorder what is shown); Zl/Zp: the Unicode line and paragraph separators
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp"})


def escape_text(text: object, limit: int = 500) -> str:
    """``text`` as one printable line: control and format characters as ``\\xNN``/``\\uNNNN``, at most ``limit`` characters."""
    value = str(text)
    out = []
    for ch in value[:limit]:
        if unicodedata.category(ch) in _UNSAFE:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out) + ("..." if len(value) > limit else "")
