"""One corpus of hostile strings for every sanitiser test (tests/output/test_sanitise_*).

Each is short enough that no front-end truncates it (the notice cuts subjects at 50 columns).
"""

from __future__ import annotations

import re

HOSTILE = [
    "\r\x1b[2Kalice: pay the invoice",  # rewrites its own row to look like alice's
    "\x1b]0;pwned title\x07 hi",  # OSC 0: window title
    "\x1b]52;c;ZXZpbA==\x07 clip",  # OSC 52: writes the clipboard
    "\x1b[31mred\x1b[0m text",
    "csi \x9b2J c1 controls \x90x",  # C1 CSI and DCS
    "\u202eevil\u202c.exe txt",  # right-to-left override
    "a\u2066b\u2069c\u200ed\u200fe\u061cf\u202ag\u202bh\u202di",  # isolates, marks, embeddings
    "del\x7f bell\x07 bs\x08 esc\x1b\\ end",
    "\x01\x02\x03\x1c\x1d\x1e\x1f C0",
    "tab\there\nnew\u2028line",
    "back\\slash \\x1b is text",
    "plain words, caf\u00e9, \u65e5\u672c\u8a9e \u2713",
]

# What must never reach a terminal: C0 (but newline/tab in bodies), DEL, C1, bidi, U+2028/2029.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
UNSAFE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
