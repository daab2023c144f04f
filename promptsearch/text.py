"""Short forms of prompt text for lines that have little room."""

from __future__ import annotations


def shorten(text: str, n: int) -> str:
    """One line of at most n characters: whitespace collapsed, cut at a word boundary where
    one is near, and an ellipsis where anything was cut."""
    text = " ".join(text.split())
    if len(text) <= n:
        return text
    head = text[: n - 1]
    space = head.rfind(" ")
    if space >= n // 2:  # keep whole words unless that throws away most of the room
        head = head[:space]
    return head.rstrip(" ,;:") + "…"
