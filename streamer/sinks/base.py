"""The sink protocol and the small helpers every file sink shares.

A sink is the last stage of a pipeline: it receives every :class:`~streamer.types.Packet`
of one or more sources and writes it somewhere (a video file, a JSON-lines file,
a MOTChallenge text file, ...).

Lifecycle, per sink object (one per pipeline)::

    sink.open(info_a, class_names)      # once per source, before its first packet
    sink.open(info_b, class_names)
    sink.write(packet)                  # any interleaving of the opened sources
    ...
    sink.close()                        # once at the end; idempotent

Thread-safety: a sink is driven by ONE writer thread (the runner's sink thread).
``open`` and ``write`` must come from that thread; ``close`` may come from
another thread, but only after writes have stopped (the runner joins the writer
first). Sinks hold no locks and start no threads.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

from streamer.errors import SinkError
from streamer.types import Packet, StreamInfo

SOURCE_ID_FIELD = "{source_id}"
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")


@runtime_checkable
class Sink(Protocol):
    """What the pipeline calls on every output.

    Implementations keep per-source state (one file, one trace annotator, ...)
    in a dict keyed by ``packet.source_id``.

    Thread-safety: one writer thread calls ``open`` and ``write``; ``close`` may
    be called from another thread once writes have stopped.
    """

    def open(self, info: StreamInfo, class_names: Sequence[str]) -> None:
        """Prepare the output of one source; called once before its first packet.

        Args:
            info: What the source knows about its stream (fps, size, id).
            class_names: Detector class names, indexed by ``class_id``.

        Raises:
            SinkError: if the output cannot be created.
        """
        ...

    def write(self, packet: Packet) -> None:
        """Write one packet of an opened source.

        Raises:
            SinkError: if the source was not opened, the sink is closed, or the
                output cannot be written.
        """
        ...

    def close(self) -> None:
        """Flush and close every output.

        Idempotent; safe after a failed ``open`` and with zero packets written.

        Raises:
            SinkError: if an output could not be flushed or closed (every other
                output is still closed).
        """
        ...


def safe_source_id(source_id: str) -> str:
    """Return ``source_id`` with every character outside ``[A-Za-z0-9._-]`` replaced by ``_``.

    Keeps a source id such as ``"cam/1"`` from creating folders in a file name.
    """
    return _UNSAFE_CHARS.sub("_", source_id) or "_"


def resolve_path(path_template: str, source_id: str) -> Path:
    """Return the output path of a source.

    Args:
        path_template: A file path; every ``{source_id}`` in it is replaced by the
            (file-name-safe) source id. No other ``{...}`` field is interpreted.
        source_id: Name of the source.

    Returns:
        The path, with ``~`` expanded.
    """
    return Path(path_template.replace(SOURCE_ID_FIELD, safe_source_id(source_id))).expanduser()


def class_name_of(class_names: Sequence[str], class_id: int) -> str:
    """Return the name of ``class_id``, or its decimal string when it is out of range."""
    if 0 <= class_id < len(class_names):
        return str(class_names[class_id])
    return str(class_id)


def prepare_output_file(path: Path, what: str) -> None:
    """Create the parent folders of ``path`` and fail now if it cannot be written.

    Args:
        path: The output file.
        what: Name of the sink, for the error message.

    Raises:
        SinkError: if the folder cannot be created or the file is not writable.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb"):
            pass
    except OSError as exc:
        raise SinkError(f"{what}: cannot create '{path}': {exc.strerror or exc}") from exc


class LineFile:
    """A text file written line by line, flushed at least every ``flush_interval_s``.

    The flush happens on the next write after the interval has elapsed (no timer
    thread), so a crash loses at most the records written during the last
    ``flush_interval_s`` of wall time. ``close`` flushes everything.

    Thread-safety: one writer thread; ``close`` after writes stopped.

    Args:
        path: File to create (truncated if it exists); parent folders are created.
        what: Name of the owning sink, for error messages.
        flush_interval_s: Longest time, seconds, that written text may stay in the
            process's buffer.

    Raises:
        SinkError: if the file cannot be created.
    """

    def __init__(self, path: Path, what: str, flush_interval_s: float = 1.0) -> None:
        self.path = path
        self._what = what
        self._flush_interval_s = flush_interval_s
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: IO[str] | None = open(  # noqa: SIM115 (closed in close())
                path, "w", encoding="utf-8", newline="\n", buffering=1 << 16
            )
        except OSError as exc:
            raise SinkError(f"{what}: cannot create '{path}': {exc.strerror or exc}") from exc
        self._last_flush = time.monotonic()

    def write(self, text: str) -> None:
        """Append ``text`` (already newline-terminated) and flush if it is time.

        Raises:
            SinkError: if the file is closed or the write fails.
        """
        if self._fh is None:
            raise SinkError(f"{self._what}: '{self.path}' is closed")
        try:
            self._fh.write(text)
            now = time.monotonic()
            if now - self._last_flush >= self._flush_interval_s:
                self._fh.flush()
                self._last_flush = now
        except OSError as exc:
            raise SinkError(f"{self._what}: cannot write '{self.path}': {exc}") from exc

    def close(self) -> None:
        """Flush and close; idempotent.

        Raises:
            SinkError: if the final flush fails.
        """
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.close()
        except OSError as exc:
            raise SinkError(f"{self._what}: cannot close '{self.path}': {exc}") from exc


class Closable(Protocol):
    """Anything with a ``close()`` method."""

    def close(self) -> None: ...


def close_all(closers: Sequence[tuple[str, Closable]], what: str) -> None:
    """Call ``close()`` on every object, then raise one :class:`SinkError` naming all failures.

    Args:
        closers: ``(label, object with close())`` pairs; the label names the output.
        what: Name of the sink, for the error message.

    Raises:
        SinkError: if any ``close()`` raised; all objects were still closed.
    """
    failures: list[str] = []
    for label, obj in closers:
        try:
            obj.close()
        except Exception as exc:  # keep closing the others, report all at the end
            failures.append(f"{label}: {exc}")
    if failures:
        raise SinkError(f"{what}: close failed: " + "; ".join(failures))


__all__ = [
    "SOURCE_ID_FIELD",
    "Closable",
    "LineFile",
    "Sink",
    "class_name_of",
    "close_all",
    "prepare_output_file",
    "resolve_path",
    "safe_source_id",
]
