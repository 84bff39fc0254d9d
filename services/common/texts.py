"""The one text policy of every service: what text a caller may send, and the reason when it may not.

Why one module: NER alt-texts, scorer candidate texts and embedder queries are all text from outside;
they must be refused for the same things (empty, whitespace only, over the service's length limit,
control characters or lone surrogates that show binary data) with the same words, whether the answer
is a gRPC INVALID_ARGUMENT or a dead-letter reason.
"""

from __future__ import annotations

import unicodedata

from mofi_platform.services.common.errors import InvalidInput

__all__ = ["decode_text", "validate_text"]


def decode_text(data: bytes, max_chars: int) -> str:
    """Kafka/byte input -> validated text; non-UTF-8 bytes are InvalidInput."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"text is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    return validate_text(text, max_chars)


def validate_text(text: str, max_chars: int) -> str:
    """Empty, whitespace-only, over-long and binary (control characters, lone surrogates) text is
    InvalidInput with the reason; anything else is returned unchanged (offsets refer to it)."""
    if not text:
        raise InvalidInput("text is empty")
    if len(text) > max_chars:
        raise InvalidInput(f"text of {len(text)} characters exceeds the limit of {max_chars}")
    if not text.strip():
        raise InvalidInput("text is only whitespace")
    for i, ch in enumerate(text):
        cat = unicodedata.category(ch)
        if cat == "Cs" or (cat == "Cc" and ch not in "\t\n\r"):
            raise InvalidInput(f"text looks binary: control character U+{ord(ch):04X} at offset {i}")
    return text
