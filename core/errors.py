"""The project's one error type: anything a user can cause raises ``AlprError``."""
from __future__ import annotations


class AlprError(Exception):
    """A problem with the user's input (file, flag, model) described in one line."""


class DarknetFormatError(AlprError):
    """A Darknet ``.cfg`` or ``.weights`` file that cannot be read as given."""
