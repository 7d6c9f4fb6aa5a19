"""Python transforms as plain decorated functions, built into Wasm components.

```python
import json
import wafer

@wafer.stream_transform(entity="user_id", outputs={"amount": "float64", "country": "text", "channel": "text?"})
def card_txn(event):
    v = json.loads(event.value)
    return {"user_id": v["user_id"], "amount": float(v["amount"]), "country": v["country"],
            "channel": event.headers.get("channel")}
```

The function gets one event (``value`` bytes, ``key``, ``timestamp_ms``, ``topic``, ``partition``,
``offset``, ``headers`` as a dict of text) and returns a row (a dict), a list of rows, or ``None``
(no rows). A row's entity key is its ``entity`` field; its event time is ``event_time_ms`` if it
has one, else the event's time; every other field is an output feature (a declared output it does
not set is null). Output types: ``boolean``, ``int64``, ``float64``, ``text``, ``bytes``,
``float32s``, ``int64s``, ``texts``; a trailing ``?`` makes it nullable. Raising
:class:`BadInput` (or any exception) rejects the event as bad input; the message names the
source line that raised.

:func:`build` turns the file into a component with componentize-py (``pip install
wafer[build]``). The same module is the guest-side ``wafer`` inside the component (it needs
nothing but the standard library).
"""

from __future__ import annotations

import os
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

# Build-time modules (re, shutil, subprocess, tempfile, pathlib) are imported in `build`: inside
# the component this module is `wafer`, and only the standard library's pure parts are there.

TYPES = ("boolean", "int64", "float64", "text", "bytes", "float32s", "int64s", "texts")


class BadInput(Exception):
    """Raise in a transform to reject the event as bad input (it goes to the dead letters)."""


class DeclarationError(ValueError):
    """A ``@stream_transform`` declaration is wrong (the message names the source line)."""


class TransformSpec:
    def __init__(self, fn: Callable, name: str, version: str, entity: str, outputs: List[Tuple[str, str, bool]]):
        self.fn, self.name, self.version, self.entity, self.outputs = fn, name, version, entity, outputs
        self.where = f"{fn.__code__.co_filename}:{fn.__code__.co_firstlineno}"


#: Transforms declared so far in this interpreter (one per component).
TRANSFORMS: List[TransformSpec] = []


def stream_transform(
    name: Optional[str] = None, *, entity: str, outputs: Dict[str, str], version: str = "1.0.0"
) -> Callable[[Callable], Callable]:
    """Declare a stream transform: ``entity`` names the row field holding the entity key,
    ``outputs`` maps each output feature to its type (``"float64"``, ``"text?"``...)."""

    def deco(fn: Callable) -> Callable:
        where = f"{fn.__code__.co_filename}:{fn.__code__.co_firstlineno}"
        if not isinstance(entity, str) or not entity:
            raise DeclarationError(f"{where}: `entity` must name the row field holding the entity key")
        if not outputs:
            raise DeclarationError(f"{where}: `outputs` declares no feature")
        specs = []
        for out, ty in outputs.items():
            nullable = isinstance(ty, str) and ty.endswith("?")
            base = ty[:-1] if nullable else ty
            if base not in TYPES:
                raise DeclarationError(f"{where}: output `{out}` has type {ty!r}; expected one of {', '.join(TYPES)} (`?` = nullable)")
            if out == entity or out == "event_time_ms":
                raise DeclarationError(f"{where}: `{out}` is the entity or the event time, not an output")
            specs.append((out, base, nullable))
        TRANSFORMS.append(TransformSpec(fn, name or fn.__name__, version, entity, specs))
        return fn

    return deco


def log(level: str, message: str) -> None:
    """Log ``message`` through the host at ``level`` (``"trace"``, ``"debug"``, ``"info"``,
    ``"warn"``, ``"error"``): the host tags it with the transform's name and rate-limits it. Outside
    a component (trying the function in plain Python) it goes to stderr."""
    try:
        from wit_world.imports import host
    except ImportError:
        import sys

        print(f"{level.upper()} {message}", file=sys.stderr)
        return
    host.log(getattr(host.Level, level.upper()), message)


class Event:
    """What the function receives (a read-only view of the WIT event)."""

    __slots__ = ("value", "key", "timestamp_ms", "topic", "partition", "offset", "headers")

    def __init__(self, e: Any) -> None:
        self.value: bytes = e.value
        self.key: Optional[bytes] = e.key
        self.timestamp_ms: int = e.timestamp_ms
        self.topic: str = e.topic
        self.partition: int = e.partition
        self.offset: int = e.offset
        self.headers: Dict[str, str] = {h.key: h.value.decode("utf-8", "replace") for h in e.headers}

    def json(self) -> Any:
        import json

        return json.loads(self.value)


def _where(exc: BaseException) -> str:
    """`file.py, line N, in fn: Error: message` at the innermost frame of user code."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.endswith(("authoring.py", "wafer_entry.py", "__init__.py"))]
    msg = f"{type(exc).__name__}: {exc}" if not isinstance(exc, BadInput) else str(exc)
    if not frames:
        return msg
    f = frames[-1]
    return f"{os.path.basename(f.filename)}, line {f.lineno}, in {f.name}: {msg}"


# -- the build ---------------------------------------------------------------------------------

ENTRY = '''\
"""Generated by wafer.build: the component's exports around {module}'s @wafer.stream_transform."""
import wafer
from componentize_py_types import Ok, Err
from wit_world import exports
from wit_world.imports import types as T

import {module}  # noqa: F401  (registers the transform)

if len(wafer.TRANSFORMS) != 1:
    raise wafer.DeclarationError(
        "{module}.py must declare exactly one @wafer.stream_transform, found %d" % len(wafer.TRANSFORMS))
SPEC = wafer.TRANSFORMS[0]
VT = {{"boolean": T.ValueType.BOOLEAN, "int64": T.ValueType.INT64, "float64": T.ValueType.FLOAT64,
      "text": T.ValueType.TEXT, "bytes": T.ValueType.BYTES, "float32s": T.ValueType.FLOAT32S,
      "int64s": T.ValueType.INT64S, "texts": T.ValueType.TEXTS}}
MAKE = {{"boolean": lambda v: T.Value_Boolean(bool(v)), "int64": lambda v: T.Value_Int64(int(v)),
        "float64": lambda v: T.Value_Float64(float(v)), "text": lambda v: T.Value_Text(str(v)),
        "bytes": lambda v: T.Value_Bytes(bytes(v)), "float32s": lambda v: T.Value_Float32s([float(x) for x in v]),
        "int64s": lambda v: T.Value_Int64s([int(x) for x in v]), "texts": lambda v: T.Value_Texts([str(x) for x in v])}}
OUTPUTS = {{name: ty for name, ty, _ in SPEC.outputs}}


def _row(r, event):
    if not isinstance(r, dict):
        raise wafer.BadInput("%s returned %s, not a dict of features" % (SPEC.fn.__name__, type(r).__name__))
    key = r.get(SPEC.entity)
    if key is None:
        raise wafer.BadInput("row has no `%s` (the entity)" % SPEC.entity)
    feats = []
    for name, value in r.items():
        if name == SPEC.entity or name == "event_time_ms":
            continue
        ty = OUTPUTS.get(name)
        if ty is None:
            raise wafer.BadInput("row sets `%s`, which is not a declared output" % name)
        feats.append(T.Feature(name, T.Value_Null() if value is None else MAKE[ty](value)))
    return T.FeatureRow(entity_key=str(key), event_time_ms=int(r.get("event_time_ms", event.timestamp_ms)),
                        features=feats)


class Describe(exports.Describe):
    def describe(self):
        return T.TransformInfo(
            name=SPEC.name, version=SPEC.version,
            outputs=[T.FeatureSpec(name=n, value_type=VT[t], nullable=nl) for n, t, nl in SPEC.outputs],
            params=[], reads=[])


class StreamProcessor(exports.StreamProcessor):
    def process(self, events):
        out = []
        for e in events:
            try:
                r = SPEC.fn(wafer.Event(e))
                rows = [] if r is None else [r] if isinstance(r, dict) else list(r)
                out.append(Ok([_row(x, e) for x in rows]))
            except Exception as exc:
                out.append(Err(T.TransformError_BadInput(wafer._where(exc))))
        return out
'''


def _componentize_py(explicit: Optional[str]) -> str:
    import shutil
    import sys
    from pathlib import Path

    for c in (explicit, os.environ.get("COMPONENTIZE_PY"), str(Path(sys.executable).with_name("componentize-py"))):
        if c and Path(c).exists():
            return c
    found = shutil.which("componentize-py")
    if not found:
        raise _build_error("componentize-py not found: `pip install wafer[build]` (componentize-py==0.25.1)")
    return found


class _ScaffoldBuildError(Exception):
    """`BuildError` where this module runs alone (as `wafer.py` in a `wafer new` project)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _build_error(msg: str) -> Exception:
    try:
        from .errors import BuildError
    except ImportError:  # not inside the package: a scaffolded project's own copy
        return _ScaffoldBuildError(msg, code="build_failed")
    return BuildError(msg, code="build_failed")


def build(source: Any, out: Any = None, *, componentize_py: Optional[str] = None) -> Any:
    """Build ``source`` (a ``.py`` file with one ``@wafer.stream_transform``) into a component.

    Returns the ``pathlib.Path`` of the ``.wasm`` (default: next to the source). Errors raise
    :class:`wafer.errors.BuildError` naming ``file:line`` where possible.
    """
    import re
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    src = Path(source).resolve()
    text = src.read_text()
    try:
        compile(text, str(src), "exec")
    except SyntaxError as e:
        raise _build_error(f"{src.name}:{e.lineno}: {e.msg}") from None
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", src.stem):
        raise _build_error(f"{src.name}: the file name must be a Python module name")
    out_path = Path(out).resolve() if out else src.with_suffix(".wasm")
    tool = _componentize_py(componentize_py)
    wit = Path(__file__).with_name("wit")
    with tempfile.TemporaryDirectory(prefix="wafer-build-") as tmp:
        pkg = Path(tmp) / "wafer"
        pkg.mkdir()
        shutil.copy(__file__, pkg / "__init__.py")
        (Path(tmp) / "wafer_entry.py").write_text(ENTRY.format(module=src.stem))
        cmd = [tool, "-d", str(wit), "-w", "stream-transform", "componentize", "wafer_entry",
               "-p", tmp, "-p", str(src.parent), "-o", str(out_path)]
        r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise _build_error(_explain(r.stderr + r.stdout, src))
    return out_path


def _explain(log: str, src: Any) -> str:
    """The user's line from a componentize-py failure (its traceback names the source file)."""
    import re

    lines = log.strip().splitlines()
    at = [i for i, l in enumerate(lines) if f'File "{src}"' in l or f"{src.name}\", line" in l]
    errs = [l for l in lines if re.match(r"^\s*[A-Za-z_][\w.]*(Error|Exception)\b.*: ", l)]
    last = errs[-1] if errs else next((l for l in reversed(lines) if l.strip() and not l.startswith(" ")), "build failed")
    if at:
        m = re.search(r'line (\d+)', lines[at[-1]])
        line = m.group(1) if m else "?"
        return f"{src.name}:{line}: {last.strip()}"
    return "\n".join(lines[-15:]) or "componentize-py failed"
