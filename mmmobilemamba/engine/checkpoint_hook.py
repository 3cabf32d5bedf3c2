"""A CheckpointHook whose checkpoints survive a kill at any moment and hold
everything a resumed run needs to continue exactly."""
import glob
import os
import os.path as osp
from typing import Optional

from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop

from ..checkpoint.runner_state import plain_message_hub
from .atomic_io import atomic_write_text, remove_stale_tmp_files
from .rng import get_rng_state, set_rng_state

#: Key of the resume state in a checkpoint.
RESUME_KEY = 'resume_state'
#: File name of the checkpoints saved inside an epoch.
RESUME_TMPL = 'resume_iter_{}.pth'


def _is_remote(path: Optional[str]) -> bool:
    return path is not None and '://' in str(path)


def _built_train_loop(runner):
    """The train loop if training built it (``runner.train_loop`` would
    build one from the config)."""
    loop = getattr(runner, '_train_loop', None)
    return loop if isinstance(loop, BaseLoop) else None


@HOOKS.register_module()
class ResumableCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook, crash-safe and exactly resumable.

    Over the stock hook:

    - Checkpoints are written atomically (temporary file, fsync, rename;
      :class:`~mmmobilemamba.engine.atomic_io.AtomicLocalBackend`), and so
      is the ``last_checkpoint`` pointer. It is updated only after its
      checkpoint is complete, and old checkpoints are deleted only after
      that. Temporary files of a killed save are removed at the next start.
    - Each checkpoint holds ``resume_state``: the global random states of
      every rank (Python, numpy, torch CPU and CUDA), the sampler's seed
      and the position in the epoch. Resuming restores them right before
      the next training iteration. The uninterrupted run does the same
      after each save, so what happens between a save and the next
      iteration (validation, dataloader start-up) does not change
      training, and a resumed run continues bit for bit.
    - ``resume_interval``: in epoch-based training, also save every so many
      iterations inside an epoch (``resume_iter_{N}.pth``; only the latest
      is kept), so that a kill loses at most that many iterations. Needs
      :class:`~mmmobilemamba.engine.loops.ResumableEpochBasedTrainLoop`.

    - The message hub is stored as tensors and Python scalars
      (:func:`~mmmobilemamba.checkpoint.runner_state.plain_message_hub`),
      so loading the file needs nothing beyond torch's weights-only
      defaults; :func:`~mmmobilemamba.checkpoint.load_checkpoint_file`
      turns it back.

    EMA weights are saved and restored by EMAHook, the optimizer, parameter
    schedulers and message hub by the Runner.

    Args:
        resume_interval (int, optional): Iterations between checkpoints
            inside an epoch. None: only the stock hook's checkpoints.
        **kwargs: CheckpointHook's arguments.
    """

    def __init__(self, *args, resume_interval: Optional[int] = None,
                 **kwargs) -> None:
        if (kwargs.get('backend_args') is None
                and kwargs.get('file_client_args') is None
                and not _is_remote(kwargs.get('out_dir'))):
            kwargs['backend_args'] = dict(backend='atomic_local')
        super().__init__(*args, **kwargs)
        if resume_interval is not None and resume_interval < 1:
            raise ValueError(
                f'resume_interval must be >= 1, got {resume_interval}')
        self.resume_interval = resume_interval
        # every rank's random states at the first save since the last
        # training iteration; restored before the next one
        self._rng_states = None

    # ---- start-up ------------------------------------------------------
    def before_train(self, runner) -> None:
        super().before_train(runner)
        if (self.by_epoch and self.resume_interval
                and not hasattr(runner.train_loop, 'resume_at')):
            runner.logger.warning(
                'resume_interval is ignored: saving inside an epoch needs '
                "train_cfg = dict(type='ResumableEpochBasedTrainLoop', ...)")
            self.resume_interval = None
        if is_main_process() and not _is_remote(self.out_dir):
            for path in remove_stale_tmp_files(self.out_dir):
                runner.logger.info(
                    f'removed {path}: a checkpoint save that did not finish')

    # ---- saving --------------------------------------------------------
    def _snapshot(self) -> None:
        """Capture the random states once per gap between iterations (on
        every rank: saves happen on all ranks at the same points)."""
        if self._rng_states is None:
            state = get_rng_state()
            self._rng_states = (all_gather_object(state)
                                if get_world_size() > 1 else [state])

    def _save_checkpoint(self, runner) -> None:
        self._snapshot()
        super()._save_checkpoint(runner)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        self._snapshot()
        super()._save_best_checkpoint(runner, metrics)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if isinstance(checkpoint.get('message_hub'), dict):
            # tensors and Python scalars: loading needs no numpy/mmengine
            # globals (mmmobilemamba.checkpoint.runner_state)
            checkpoint['message_hub'] = plain_message_hub(
                checkpoint['message_hub'])
        if self._rng_states is None:
            # a save that did not come through this hook runs on the main
            # process only: no collective here
            self._rng_states = [get_rng_state()]
        loop = _built_train_loop(runner)
        if loop is None:  # not saved by training
            return
        epoch, batch = loop.epoch, getattr(loop, 'next_batch', 0)
        if batch >= len(loop.dataloader):  # saved at the end of an epoch
            epoch, batch = epoch + 1, 0
        sampler = getattr(loop.dataloader, 'batch_sampler', None)
        sampler = getattr(sampler, 'sampler', None)
        sampler_seed = getattr(sampler, 'seed', None)
        checkpoint[RESUME_KEY] = dict(
            rng=self._rng_states,
            epoch=int(epoch),
            batch=int(batch),
            sampler_seed=None if sampler_seed is None else int(sampler_seed))

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        """Save, then point ``last_checkpoint`` at it, then prune: a kill
        between any two steps leaves a complete checkpoint to resume."""
        drop = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                drop = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self._save_and_point(runner, filename, meta, by_epoch=self.by_epoch)
        if is_main_process():
            if drop is not None:
                self._remove(self.filename_tmpl.format(drop))
            self._prune_resume_checkpoints()

    def _save_and_point(self, runner, filename, meta, by_epoch) -> None:
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if is_main_process():
            atomic_write_text(
                osp.join(runner.work_dir, 'last_checkpoint'),
                str(self.last_ckpt))

    def _remove(self, filename) -> None:
        path = self.file_backend.join_path(self.out_dir, filename)
        if path == self.last_ckpt:
            return
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # deepspeed saves directories
            self.file_backend.rmtree(path)

    def _prune_resume_checkpoints(self) -> None:
        """Delete in-epoch checkpoints older than the latest checkpoint."""
        if _is_remote(self.out_dir):
            return
        for path in glob.glob(osp.join(self.out_dir, RESUME_TMPL.format('*'))):
            if path != self.last_ckpt:
                os.remove(path)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if not (self.by_epoch and self.resume_interval):
            return
        loop = runner.train_loop
        if ((runner.iter + 1) % self.resume_interval != 0
                or loop.next_batch >= len(loop.dataloader)):
            return  # the last batch of an epoch: the epoch's own save
        runner.logger.info(
            f'Saving checkpoint at {runner.iter + 1} iterations '
            f'(epoch {runner.epoch + 1}, batch {loop.next_batch})')
        self._snapshot()
        self._save_and_point(
            runner,
            RESUME_TMPL.format(runner.iter + 1),
            meta=dict(epoch=runner.epoch, iter=runner.iter + 1),
            by_epoch=False)
        if is_main_process():
            self._prune_resume_checkpoints()

    # ---- resuming ------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(RESUME_KEY)
        loop = _built_train_loop(runner)
        if not runner._resume or state is None or loop is None:
            return
        if hasattr(loop, 'resume_at'):
            loop.resume_at(state['epoch'], state['batch'])
        elif state['batch']:
            raise RuntimeError(
                'this checkpoint was saved in the middle of an epoch; '
                'resuming it needs '
                "train_cfg = dict(type='ResumableEpochBasedTrainLoop', ...)")
        sampler = getattr(loop.dataloader, 'batch_sampler', None)
        sampler = getattr(sampler, 'sampler', None)
        if state.get('sampler_seed') is not None and hasattr(sampler, 'seed'):
            sampler.seed = state['sampler_seed']
        self._rng_states = state['rng']

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self._rng_states is None:
            return
        states = self._rng_states
        self._rng_states = None
        if len(states) == get_world_size():
            set_rng_state(states[get_rank()], runner.logger)
        else:
            runner.logger.warning(
                f'the checkpoint holds random states of {len(states)} '
                f'process(es), this run has {get_world_size()}: every '
                'process continues with those of rank 0')
            set_rng_state(states[0], runner.logger)
