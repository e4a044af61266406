"""Credentials out of text: URLs in logs, errors, resolved configs and pipeline strings."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"']+")


def redact_url(url: str) -> str:
    """Return ``url`` with any ``user:password@`` replaced by ``***@``.

    Args:
        url: A URL, e.g. ``rtsp://admin:secret@10.0.0.5:554/stream1``.

    Returns:
        The URL without credentials, e.g. ``rtsp://***@10.0.0.5:554/stream1``; a
        string that does not parse as a URL with credentials is returned unchanged.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def redact_urls(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``.

    Args:
        text: Any text (an error message, a GStreamer pipeline); a URL ends at
            whitespace or a quote.

    Returns:
        The text with each ``scheme://user:pass@host`` written ``scheme://***@host``.
    """
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
