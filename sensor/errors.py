"""The project's error types. Every error a user can cause derives from HoldmonError.

The CLI turns a HoldmonError into one line on stderr and exit code 2; anything else is a bug.
"""

from __future__ import annotations


class HoldmonError(Exception):
    """Root of all errors caused by bad input, bad options or a failed device."""


class RecordingError(HoldmonError):
    """A recording file could not be read or written.

    `str()` gives `path:line: message` (or `path: message` without a line number).
    """

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class DecodeError(HoldmonError):
    """A sensor packet could not be decoded.

    `offset` is the byte offset in the packet where decoding failed, `length` the packet length.
    """

    def __init__(self, profile: str, message: str, offset: int, length: int) -> None:
        self.profile = profile
        self.offset = offset
        self.length = length
        super().__init__(f"{profile} packet: {message} (at byte {offset} of {length})")


class ConfigError(HoldmonError):
    """An option or a rules/config file has an invalid value."""


class DeviceError(HoldmonError):
    """A Bluetooth device could not be found, connected or configured."""


class DataError(HoldmonError):
    """Sample data cannot be processed: wrong array shape, too few samples, unusable timestamps."""
