"""Error hierarchy of streamer.

Every error a user can provoke with bad input derives from :class:`StreamerError`
and carries a one-line message that names what was wrong and where (the YAML path
of a bad field, the file and frame of a corrupt video, the stage that failed).
The CLI prints ``str(error)`` on one line and exits non-zero; no traceback.
"""

from __future__ import annotations


class StreamerError(Exception):
    """Base class of all errors raised on purpose by streamer."""


class ConfigError(StreamerError):
    """A pipeline YAML (or preset) is invalid: the message names the YAML path."""


class SourceError(StreamerError):
    """A source cannot be opened or read: the message names the source and frame."""


class BackendError(StreamerError):
    """A detection backend cannot load or run a model, or decode its output."""


class SinkError(StreamerError):
    """A sink cannot open, write or close its output."""


class StageError(StreamerError):
    """A pipeline stage raised: names the stage, the source and the frame.

    Attributes:
        stage: Name of the stage that raised.
        source_id: Source of the packet being processed, or None.
        seq: Per-source frame sequence number (0-based), or None.
    """

    def __init__(
        self, message: str, *, stage: str, source_id: str | None = None, seq: int | None = None
    ) -> None:
        where = f"stage '{stage}'"
        if source_id is not None:
            where += f", source '{source_id}'"
        if seq is not None:
            where += f", frame {seq}"
        super().__init__(f"{where}: {message}")
        self.stage = stage
        self.source_id = source_id
        self.seq = seq


class ChannelClosed(StreamerError):
    """Raised by ``Channel.get`` once the channel is closed and drained."""


class ChannelBroken(StreamerError):
    """Raised by ``Channel.put`` when the consumer side has gone away (pipeline stopping)."""
