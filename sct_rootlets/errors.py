"""Errors a user can cause and fix; the command line prints them as one sentence and exits non-zero."""


class RootletsError(Exception):
    """Base class: the message is written for the person running the command."""


class InputImageError(RootletsError):
    """The input image cannot be segmented (missing, unreadable, wrong dimensions or values)."""


class OutputError(RootletsError):
    """An output cannot be written (exists, not writable, would overwrite an input)."""


class ModelError(RootletsError):
    """A model cannot be found, loaded or verified."""


class InstallError(RootletsError):
    """A model cannot be downloaded, verified or unpacked."""
