"""Point-in-time training data on a Spark cluster, with Wafer's exact semantics.

Rows are sharded by entity: events by their key (``event_key_column``, the Kafka convention of
keying events by entity), spine rows by their entity column, with the same hash, so every entity's
history and spine rows meet in one partition. Each partition then runs :func:`wafer.training_data`
(the Rust engine, in the executor's Python worker) inside ``mapInArrow``. Features of one entity
depend only on that entity's events, so the result equals the single-process result bit for bit,
provided that:

- events are keyed by the entity of the rows their transform emits (the key column holds it);
- event order among events of one entity with equal event times is kept: events carry their
  position in ``events_df`` (``monotonically_increasing_id``) through the shuffle, and each
  partition replays them in that order;
- transforms that read the event's ``offset`` get an ``offset`` column (otherwise offsets are
  positions within a partition).

The manifest and the ``.wasm`` files it names must be readable at the same path on every executor
(a shared filesystem, or ship them with ``spark.sparkContext.addFile`` and a path under
``SparkFiles``), and ``wafer`` installed there. Ray Data: the same shape with
``ds.groupby(<shard>).map_groups(fn, batch_format="pyarrow")`` calling :func:`wafer.training_data`.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Optional, Sequence, Union

import pyarrow as pa

ROW = "__wafer_row"
SEQ = "__wafer_seq"
PART = "__wafer_shard"
KIND = "__wafer_kind"
EVENT_COLUMNS = ("timestamp_ms", "value", "key", "topic", "partition", "offset")


def _entity_of(manifest: str, features: Sequence[str]) -> str:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        raise ValueError("pass entity_column= (reading the manifest needs Python 3.11's tomllib)")
    with open(manifest, "rb") as f:
        m = tomllib.load(f)
    entities = {v["name"]: v.get("entity") for v in m.get("stream_view", [])}
    found = {entities[f.split(":")[0]] for f in features if f.split(":")[0] in entities}
    if len(found) != 1:
        raise ValueError(f"pass entity_column=: the features' stream views have entities {sorted(found)}")
    return found.pop()


def training_data(
    spark: Any,
    events_df: Any,
    spine_df: Any,
    manifest: Union[str, "os.PathLike[str]"],
    features: Union[str, Sequence[str]],
    *,
    entity_column: Optional[str] = None,
    time_column: str = "timestamp_ms",
    full_feature_names: bool = False,
    event_key_column: str = "key",
    partitions: Optional[int] = None,
    batch_size: int = 1024,
) -> Any:
    """:func:`wafer.training_data` on Spark: returns a DataFrame with the spine's columns (in the
    spine's row order) and one column per feature.

    ``events_df`` has the columns of a Parquet event file (``timestamp_ms``, ``value``, ``key``,
    optional ``topic``, ``partition``, ``offset``); ``spine_df`` the entity column (the view's
    ``entity``, or ``entity_column``), ``time_column`` and any request params.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    import wafer

    manifest = os.path.abspath(os.fspath(manifest))
    feats = [features] if isinstance(features, str) else list(features)
    entity = entity_column or _entity_of(manifest, feats)
    n = partitions or spark.sparkContext.defaultParallelism

    ev = events_df.select(
        *[F.col(c) for c in EVENT_COLUMNS if c in events_df.columns and c != "key"],
        F.col(event_key_column).cast("string").alias("key"),
        F.monotonically_increasing_id().alias(SEQ),
    )
    spine_cols = spine_df.columns
    sp = spine_df.withColumn(ROW, F.monotonically_increasing_id())

    # The output schema: the same call on an empty spine (types come from the transforms' schemas).
    spine_arrow = to_arrow_schema(sp.schema)
    ev_arrow = to_arrow_schema(ev.select(*[c for c in ev.columns if c != SEQ]).schema)
    empty = wafer.training_data(
        manifest, ev_arrow.empty_table(), spine_arrow.empty_table(), feats,
        entity_column=entity_column, time_column=time_column, full_feature_names=full_feature_names,
        batch_size=batch_size, threads=1,
    )
    out_schema = from_arrow_schema(empty.schema)

    # One DataFrame of both kinds of rows (mapInArrow takes one input), sharded by entity hash:
    # KIND 0 = an event (struct `e`), 1 = a spine row (struct `s`).
    e_type = ev.select(F.struct(*ev.columns).alias("e")).schema["e"].dataType
    s_type = sp.select(F.struct(*sp.columns).alias("s")).schema["s"].dataType

    def shard_of(col: Any) -> Any:
        return F.pmod(F.hash(col.cast("string")), F.lit(n)).alias(PART)

    both = ev.select(
        F.lit(0).alias(KIND), shard_of(F.col("key")), F.struct(*ev.columns).alias("e"), F.lit(None).cast(s_type).alias("s")
    ).unionByName(
        sp.select(
            F.lit(1).alias(KIND), shard_of(F.col(entity)), F.lit(None).cast(e_type).alias("e"), F.struct(*sp.columns).alias("s")
        )
    ).repartition(n, PART)

    opts = dict(entity_column=entity_column, time_column=time_column, full_feature_names=full_feature_names,
                batch_size=batch_size)

    def shard(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow.compute as pc

        import wafer as w

        got = list(batches)
        if not got:
            return
        t = pa.Table.from_batches(got)
        is_ev = pc.equal(t.column(KIND), 0)
        s = pa.Table.from_struct_array(t.filter(pc.invert(is_ev)).column("s").combine_chunks())
        if s.num_rows == 0:
            return
        e = pa.Table.from_struct_array(t.filter(is_ev).column("e").combine_chunks())
        # Replay in the order of events_df (ties at equal event times resolve as in one process).
        e = e.sort_by(SEQ).drop_columns([SEQ])
        out = w.training_data(manifest, e, s, feats, threads=1, **opts)
        yield from out.to_batches()

    feature_cols = [c for c in empty.column_names if c not in spine_cols and c != ROW]
    return both.mapInArrow(shard, out_schema).orderBy(ROW).select(*spine_cols, *feature_cols)
