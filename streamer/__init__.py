"""streamer: real-time video analytics from a pipeline YAML."""

from __future__ import annotations

__version__ = "0.1.0"
