"""Plugins with their own bound on their input (``max_input_bytes``), for test_storage.py."""

from __future__ import annotations

from typing import ClassVar

from tests.plugins.sample_plugins import EchoPlugin

# {"message":"...","repeat":1}: 26 bytes of JSON around the message.
BOUND = 100


class BoundedEchoPlugin(EchoPlugin):
    """Echoes, but accepts at most BOUND bytes of input."""

    name = "bounded_echo"
    max_input_bytes: ClassVar[int | None] = BOUND
