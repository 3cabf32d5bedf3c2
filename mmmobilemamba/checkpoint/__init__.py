"""Checkpoint files: read safely, write atomically, load with a key report.

A checkpoint is a pickle, and unpickling can run any code the file asks
for; mmengine also executes the config text stored in a checkpoint. This
package reads every checkpoint without running anything from it:

- :mod:`.file_format`: is it a checkpoint at all; archive limits.
- :mod:`.unpickler`: torch's weights-only unpickler, allowlist per load.
- :mod:`.runner_state`: a Runner's message hub, read through checked
  stand-ins; the plain form the project writes.
- :mod:`.config_text`: stored config text turned into data-only text.
- :mod:`.loader`: the one entry point, :func:`load_checkpoint_file`.
- :mod:`.trust`: the user's opt-in for files they trust.
- :mod:`.keys`: weights into a module, with a report of mismatched keys.
- :mod:`.release`: the authors' release checkpoints mapped to this layout.

The threat model is in docs/checkpoints.md.
"""
from .errors import (CheckpointError, CheckpointLimitError,
                     CorruptCheckpointError, UnsafeCheckpointError)
from .file_format import MAX_EXPANSION_ENV, inspect_checkpoint
from .keys import (LoadReport, check_checkpoint_matches, compare_keys,
                   fusion_hint, load_checkpoint, load_state_dict,
                   state_dict_of)
from .loader import (allowed_global_names, load_checkpoint_file,
                     load_checkpoint_from_url, save_checkpoint_file)
from .trust import (TRUST_ENV, add_trust_argument, checkpoints_trusted,
                    trust_checkpoints)

__all__ = [
    'CheckpointError', 'CheckpointLimitError', 'CorruptCheckpointError',
    'UnsafeCheckpointError', 'MAX_EXPANSION_ENV', 'inspect_checkpoint',
    'LoadReport', 'check_checkpoint_matches', 'compare_keys', 'fusion_hint',
    'load_checkpoint', 'load_state_dict', 'state_dict_of',
    'allowed_global_names', 'load_checkpoint_from_url',
    'load_checkpoint_file', 'save_checkpoint_file', 'TRUST_ENV',
    'add_trust_argument', 'checkpoints_trusted', 'trust_checkpoints'
]
