"""The sandboxed Jinja environment: a user's template folder first, then the shipped templates.

Only this package imports jinja2 (STYLE.md). Context values are data: the sandbox and
``StrictUndefined`` keep a template from reaching outside its context or printing a typo as
an empty string. HTML templates are autoescaped; in Markdown templates every printed value
passes through :func:`govssl.reports._format.md_text` (no raw HTML, links or code fences from
user text) unless a filter already made it Markdown (``code``, ``cell``, ``ci``).
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from pathlib import Path

import jinja2
from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from govssl._resources import templates_dir
from govssl.errors import TemplateError
from govssl.reports._format import cell, ci, code, md_text, num

__all__ = ["environment", "render_template", "TEMPLATE_DIR_NOT_FOUND"]

TEMPLATE_DIR_NOT_FOUND = "{path}: template folder not found"

# Exceptions that template code can raise while rendering (besides Jinja's own).
_RUNTIME_ERRORS = (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError)


class _MemoryBytecodeCache(jinja2.BytecodeCache):
    """Compiled templates kept for the life of the process, so each render does not recompile.

    Jinja keys a bucket by template name and file and drops it when the source's checksum
    changes, so an edited user template is compiled afresh. Only ``environment()`` uses it,
    and its environments all compile alike (same sandbox, autoescape and whitespace settings).
    """

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_BYTECODE = _MemoryBytecodeCache()


def environment(template_dir: str | Path | None = None) -> SandboxedEnvironment:
    """A sandboxed environment whose loader looks in ``template_dir`` before the shipped folder."""
    folders = []
    if template_dir is not None:
        template_dir = Path(template_dir)
        if not template_dir.is_dir():
            raise TemplateError(TEMPLATE_DIR_NOT_FOUND.format(path=template_dir))
        folders.append(template_dir)
    folders.append(templates_dir())
    env = SandboxedEnvironment(
        loader=ChoiceLoader([FileSystemLoader(str(folder)) for folder in folders]),
        undefined=StrictUndefined,
        autoescape=select_autoescape(
            enabled_extensions=("html", "htm", "html.j2", "htm.j2"),
            disabled_extensions=(),
            default_for_string=False,
            default=False,
        ),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        bytecode_cache=_BYTECODE,
        finalize=_finalize,
    )
    env.filters.update(num=num, ci=ci, code=code, cell=cell)
    env.globals["template_folders"] = [str(folder) for folder in folders]
    return env


@jinja2.pass_eval_context
def _finalize(eval_ctx, value):
    """Every printed value: HTML templates escape it themselves; Markdown ones get it literal."""
    if eval_ctx.autoescape:
        return value
    return md_text(value)


def _template_location(exc: BaseException, fallback: str) -> tuple[str, int | None]:
    """File and line of the innermost template frame (Jinja rewrites tracebacks to point there)."""
    where, line = fallback, None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if not filename.endswith(".py") and not filename.startswith("<"):
            where, line = filename, lineno
    return where, line


def render_template(env: SandboxedEnvironment, name: str, context: Mapping) -> str:
    """Render one template to a string; every template problem becomes a TemplateError."""
    try:
        template = env.get_template(name)
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or exc.name or name
        raise TemplateError(f"{where}: line {exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        folders = ", ".join(env.globals["template_folders"])
        raise TemplateError(f"{exc.name}: template not found (looked in {folders})") from None
    try:
        return template.render(context)
    except jinja2.TemplateSyntaxError as exc:  # raised by an {% include %} of a broken template
        where = exc.filename or exc.name or name
        raise TemplateError(f"{where}: line {exc.lineno}: {exc.message}") from None
    except _RUNTIME_ERRORS as exc:
        where, line = _template_location(exc, template.filename or name)
        at = f"line {line}: " if line is not None else ""
        raise TemplateError(f"{where}: {at}{type(exc).__name__}: {exc}") from None
