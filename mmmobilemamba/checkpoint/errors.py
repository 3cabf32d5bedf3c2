"""What can go wrong when a checkpoint file is read. Every message names
the file."""


class CheckpointError(RuntimeError):
    """A checkpoint file could not be loaded (the message says why)."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds objects that loading without trust may not create."""


class CorruptCheckpointError(CheckpointError):
    """The file is truncated, damaged, crafted or not a checkpoint."""


class CheckpointLimitError(CheckpointError):
    """The file exceeds a configured limit (e.g. archive expansion)."""
