"""Config text stored in a checkpoint, read as data, never run.

mmengine's Runner saves ``cfg.pretty_text`` into every checkpoint, and
mmengine executes such text with ``Config.fromstring(text, '.py')``: when
resuming (``meta['config']``, for a GPU-count check) and when an inferencer
is given weights but no config (``message_hub['runtime_info']['cfg']`` or
``meta['cfg']``). A crafted file can put ``__import__('os').system(...)``
there and pass every weights-only check, since it is only a string.

:func:`neutralize_configs` rewrites those strings in an untrusted checkpoint
before mmengine sees them. Each is parsed with :func:`parse_literal_config`
(``ast``; assignments of literals, ``dict(...)`` calls and ``float('inf')``
only) and replaced by text this module writes from the parsed values, so
what mmengine executes is data we rendered. ``custom_imports`` keeps only
modules that are already imported (anything else would run a module the
file names); ``_base_`` (reads other files) is dropped. A string that is
not such plain data is removed and a warning names the file and the
construct. A trusted file keeps its strings as they are.
"""
import ast
import math
import sys
import warnings
from typing import Any, Dict, List, Tuple

_FLOAT_NAMES = {'inf': math.inf, '-inf': -math.inf, 'nan': math.nan}

#: Where mmengine reads config text from a checkpoint: (path of keys).
CONFIG_LOCATIONS: Tuple[Tuple[str, ...], ...] = (
    ('meta', 'config'),
    ('meta', 'cfg'),
    ('message_hub', 'runtime_info', 'cfg'),
)


class NotPlainConfig(ValueError):
    """The text holds something other than literal assignments."""


def _value(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (str, int, float, bool, type(None))):
            return node.value
        raise NotPlainConfig(f'line {node.lineno}: constant of type '
                             f'{type(node.value).__name__}')
    if isinstance(node, ast.UnaryOp) and isinstance(
            node.op, (ast.USub, ast.UAdd)) and isinstance(
                node.operand, ast.Constant) and type(
                    node.operand.value) in (int, float):
        value = node.operand.value
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.List):
        return [_value(item) for item in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_value(item) for item in node.elts)
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise NotPlainConfig(f'line {node.lineno}: ** in a dict')
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if name == 'dict' and not node.args and all(
                kw.arg is not None for kw in node.keywords):
            return {kw.arg: _value(kw.value) for kw in node.keywords}
        if (name == 'float' and not node.keywords and len(node.args) == 1
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).lower() in _FLOAT_NAMES):
            return _FLOAT_NAMES[str(node.args[0].value).lower()]
        raise NotPlainConfig(f'line {node.lineno}: a call to {name}()')
    if isinstance(node, ast.Call):
        raise NotPlainConfig(f'line {node.lineno}: a call to '
                             f'{ast.unparse(node.func)[:60]}()')
    raise NotPlainConfig(f'line {getattr(node, "lineno", "?")}: '
                         f'{type(node).__name__} is not plain data')


def parse_literal_config(text: str) -> Dict[str, Any]:
    """The variables of config text made only of ``name = <literal>``
    lines (what ``Config.pretty_text`` writes).

    Raises:
        NotPlainConfig: Anything else (imports, other calls, names,
            attribute access, comprehensions, ...), naming the line.
    """
    try:
        tree = ast.parse(text, mode='exec')
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise NotPlainConfig(f'not Python: {type(err).__name__}: '
                             f'{str(err)[:80]}') from None
    variables: Dict[str, Any] = {}
    for statement in tree.body:
        if not (isinstance(statement, ast.Assign)
                and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)):
            raise NotPlainConfig(f'line {statement.lineno}: a '
                                 f'{type(statement).__name__} statement')
        try:
            variables[statement.targets[0].id] = _value(statement.value)
        except RecursionError:
            raise NotPlainConfig(f'line {statement.lineno}: nested too '
                                 'deeply') from None
        except TypeError as err:  # e.g. a list as a dict key
            raise NotPlainConfig(f'line {statement.lineno}: {err}') from None
    return variables


def _render(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f"float('{value}')"
    if isinstance(value, dict):
        return '{' + ', '.join(f'{_render(k)}: {_render(v)}'
                               for k, v in value.items()) + '}'
    if isinstance(value, list):
        return '[' + ', '.join(_render(v) for v in value) + ']'
    if isinstance(value, tuple):
        inner = ', '.join(_render(v) for v in value)
        return f'({inner},)' if len(value) == 1 else f'({inner})'
    return repr(value)


def render_literal_config(variables: Dict[str, Any]) -> str:
    """Config text for ``variables`` (plain data), one assignment a line."""
    return ''.join(f'{name} = {_render(value)}\n'
                   for name, value in variables.items())


def _safe_variables(variables: Dict[str, Any]) -> Tuple[Dict[str, Any],
                                                        List[str]]:
    """Drop what would make mmengine read files or import modules."""
    dropped = []
    variables = dict(variables)
    if '_base_' in variables:
        del variables['_base_']
        dropped.append('_base_')
    imports = variables.get('custom_imports')
    if imports is not None:
        modules = imports.get('imports') if isinstance(imports, dict) \
            else None
        if isinstance(modules, str):
            modules = [modules]
        if not isinstance(modules, list) or not all(
                isinstance(m, str) for m in modules):
            del variables['custom_imports']
            dropped.append('custom_imports')
        else:
            kept = [m for m in modules if m in sys.modules]
            dropped += [f'custom_imports {m!r} (not imported)'
                        for m in modules if m not in sys.modules]
            variables['custom_imports'] = dict(imports, imports=kept)
    return variables, dropped


def neutralize_configs(checkpoint, filename: str) -> None:
    """Rewrite, in place, the config strings of an untrusted checkpoint at
    :data:`CONFIG_LOCATIONS` (see the module docstring)."""
    for path in CONFIG_LOCATIONS:
        parent = checkpoint
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        where = ''.join(f'[{k!r}]' for k in path)
        text = parent[path[-1]]
        if not isinstance(text, str):
            del parent[path[-1]]
            warnings.warn(f'checkpoint {filename}: {where} is a '
                          f'{type(text).__name__}, not config text; removed')
            continue
        try:
            variables, dropped = _safe_variables(parse_literal_config(text))
        except NotPlainConfig as err:
            del parent[path[-1]]
            warnings.warn(
                f'checkpoint {filename}: the config text in {where} is not '
                f'plain data ({err}); it was removed, since mmengine would '
                'execute it. Pass a config file (or --trust-checkpoint if '
                'you trust this file) where a tool needs the config.')
            continue
        if dropped:
            warnings.warn(f'checkpoint {filename}: dropped from the config '
                          f'text in {where}: {", ".join(dropped)}')
        parent[path[-1]] = render_literal_config(variables)
