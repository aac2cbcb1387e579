"""Rendering of traces, explanations and state as text and HTML. No widgets here."""
from .text import format_call, format_result, transcript, side_by_side  # noqa: F401
