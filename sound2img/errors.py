"""Error types. A ``UserInputError`` is the user's mistake: scripts print its one-line
message and exit 2, without a traceback. Anything else is an internal error (exit 1)."""


class Sound2ImgError(Exception):
    """Base class of every error this package raises on purpose."""


class UserInputError(Sound2ImgError):
    """Bad input from the user (file, flag, config value): one line, exit status 2."""


class AudioLoadError(UserInputError):
    """An audio file that is missing, unreadable, empty, non-finite or of absurd rate."""


class CheckpointError(UserInputError):
    """A checkpoint or latent file that is missing, of an unknown format, malicious or
    inconsistent (wrong keys or shapes)."""


class WeightsNotAvailableError(UserInputError):
    """A registered public weight file is not in the cache and cannot be downloaded."""
