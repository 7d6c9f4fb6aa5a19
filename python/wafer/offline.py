"""In-process offline path: point-in-time training data and transform runs, on the Rust engine.

:func:`training_data` runs exactly what ``wafer training-data`` runs (the same Wasm transforms,
fold, store and serving reads; no server, no subprocess): the tables it returns equal the CLI's
Parquet output bit for bit. Arrow data crosses into Rust through the C stream interface.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import pyarrow as pa

from . import _native, errors

PathLike = Union[str, "os.PathLike[str]"]


def _is_pandas(obj: Any) -> bool:
    return type(obj).__module__.startswith("pandas") and hasattr(obj, "to_records")


def _table(obj: Any) -> Any:
    """pandas → pyarrow (the index is dropped); paths and Arrow objects pass through."""
    if _is_pandas(obj):
        return pa.Table.from_pandas(obj, preserve_index=False)
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    return obj


def _events(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _events(v) for k, v in obj.items()}
    if isinstance(obj, (str, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, (list, tuple)):
        return [os.fspath(p) for p in obj]
    return _table(obj)


def training_data(
    manifest: PathLike,
    events: Any,
    spine: Any,
    features: Union[str, Sequence[str]],
    *,
    full_feature_names: bool = False,
    entity_column: Optional[str] = None,
    time_column: str = "timestamp_ms",
    batch_size: int = 1024,
    threads: Optional[int] = None,
    shard: Optional[Tuple[int, int]] = None,
    row_cache: Optional[PathLike] = None,
) -> pa.Table:
    """Point-in-time-correct features for every row of ``spine``.

    - ``manifest``: the ``wafer.toml`` declaring the views (transform paths relative to it).
    - ``events``: the history, for every stream view: a JSONL/Parquet path or a list of paths, a
      ``pyarrow.Table`` or pandas DataFrame with the columns of a Parquet event file
      (``timestamp_ms``, ``value``, optional ``key``, ``topic``, ``partition``, ``offset``), or a
      dict ``{view: <any of those>}``.
    - ``spine``: pandas DataFrame, ``pyarrow.Table`` or a Parquet path, with the entity column
      (named after the view's ``entity``, or ``entity_column``) and ``time_column`` (Int64 ms or a
      timestamp, timezone-aware or not); request params are taken from columns of their names.
    - ``features``: ``view:feature`` names (a list, or one comma-separated string).

    - ``shard``: ``(i, n)`` keeps only the spine rows whose entity falls in shard ``i`` of ``n``
      (numbered from 1; ``xxh3_64(key) mod n``, as ``wafer training-data --shard i/n``). The ``n``
      results together hold every spine row once with the same values as one unsharded call, so
      ``n`` workers (Ray tasks, Kubernetes indexed jobs) can split one job.

    - ``row_cache``: a directory where each stream view's transformed rows of its event *files*
      are kept and reused by later calls over the same files and transform (as
      ``wafer training-data --row-cache``): the Wasm step then does not run.

    Returns the spine's columns unchanged, then one nullable column per feature (``feature``, or
    ``view__feature`` with ``full_feature_names``), typed as ``wafer training-data`` types them.
    Use :func:`to_pandas` for a DataFrame with natural dtypes.
    """
    feats = [features] if isinstance(features, str) else list(features)
    sp = os.fspath(spine) if isinstance(spine, (str, os.PathLike)) else _table(spine)
    return _native.training_data(
        os.fspath(manifest),
        _events(events),
        sp,
        feats,
        entity_column=entity_column,
        time_column=time_column,
        full_feature_names=full_feature_names,
        batch_size=batch_size,
        threads=threads,
        shard=None if shard is None else f"{shard[0]}/{shard[1]}",
        row_cache=None if row_cache is None else os.fspath(row_cache),
    )


def run(
    transform: PathLike,
    events: Any,
    *,
    batch_size: int = 512,
    topic: str = "events",
    on_error: str = "raise",
    deadline_ms: int = 50,
    memory_mib: int = 64,
) -> pa.Table:
    """Run a stream transform (a ``.wasm`` component) over events, as ``wafer run`` does.

    ``events``: a JSONL/Parquet path, or a table/DataFrame with the Parquet event columns. Returns
    one row per feature row: ``event`` (the event's index), ``entity_key``, ``event_time_ms``, then
    one column per declared output (null where a row does not set it). A failed event raises
    :class:`wafer.errors.TransformEventError` naming every failure, unless ``on_error="skip"``.
    """
    ev = os.fspath(events) if isinstance(events, (str, os.PathLike)) else _table(events)
    table, failed = _native.run(
        os.fspath(transform), ev, batch_size=batch_size, topic=topic, deadline_ms=deadline_ms, memory_mib=memory_mib
    )
    if failed and on_error != "skip":
        raise TransformEventError(failed, table)
    return table


class TransformEventError(errors.OfflineError):
    """Some events failed in :func:`run`: ``failures`` is ``[(event index, code, message)]`` and
    ``table`` the rows of the events that succeeded."""

    def __init__(self, failures: Sequence[Tuple[int, str, str]], table: pa.Table) -> None:
        first = failures[0]
        super().__init__(
            f"{len(failures)} event(s) failed; first: event {first[0]}: {first[2]}", code=first[1]
        )
        self.failures = list(failures)
        self.table = table


def to_pandas(table: pa.Table) -> Any:
    """A DataFrame with natural dtypes: ints as nullable ``Int64``, booleans as ``boolean``,
    floats as ``float64`` (NaN for null), text as ``object``, timestamps as ``datetime64`` (with
    their timezone), lists as Python lists."""
    import pandas as pd

    mapping: Dict[Any, Any] = {
        pa.int64(): pd.Int64Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }
    return table.to_pandas(types_mapper=mapping.get)
