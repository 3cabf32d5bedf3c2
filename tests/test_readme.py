"""CI runs README's two commands as written: keep .ci/run and README.md in
step."""
import os.path as osp

from .helpers import REPO


def _read(*parts):
    with open(osp.join(REPO, *parts), encoding='utf-8') as f:
        return f.read()


def test_ci_runs_the_readme_commands():
    readme = _read('README.md')
    ci_lines = [line.strip() for line in _read('.ci', 'run').splitlines()]
    commands = [line for line in ci_lines
                if line and not line.startswith(('#', 'echo', 'set ', 'cd ',
                                                  'export ', 'start='))]
    assert len(commands) == 2, commands
    for command in commands:
        assert command in readme, f'.ci/run runs {command!r}, README lacks it'
