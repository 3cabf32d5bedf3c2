"""Test-only hook: SIGKILL the training process at a chosen moment, as a
preemption or crash would."""
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module(force=True)
class KillHook(Hook):
    """Kill after iteration ``after_iter`` (counted from 1, after every other
    hook of that iteration, checkpoint saves included), or in the middle of
    writing the checkpoint of iteration ``during_save_at_iter``: the
    temporary file is cut to half its size and the process killed before
    the write completes.
    """

    priority = 'LOWEST'

    def __init__(self, after_iter=None, during_save_at_iter=None):
        self.after_iter = after_iter
        self.during_save_at_iter = during_save_at_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self.after_iter is not None and runner.iter + 1 == self.after_iter:
            _die()

    def before_save_checkpoint(self, runner, checkpoint):
        if (self.during_save_at_iter is None
                or checkpoint['meta'].get('iter') != self.during_save_at_iter):
            return

        def fsync_then_die(fd):
            # the data reached the file only in part when the process died
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            _die()

        os.fsync = fsync_then_die
