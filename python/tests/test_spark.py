"""`wafer.spark.training_data` on PySpark local[2] equals the single-process result bit for bit."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

import wafer
import wafer.spark

from offline_data import FEATURES, assert_bit_equal, events, events_table, spine_rows, spine_table, write_manifest


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", __import__("sys").executable)
    s = (
        SparkSession.builder.master("local[2]")
        .appName("wafer-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    yield s
    s.stop()


def test_spark_local2_equals_single_process(spark, tmp_path):
    m = write_manifest(tmp_path)
    ev, sp = events_table(events()), spine_table(spine_rows())
    single = wafer.training_data(m, ev, sp, FEATURES, full_feature_names=True)
    got = wafer.spark.training_data(
        spark, spark.createDataFrame(ev.to_pandas()), spark.createDataFrame(sp.to_pandas()), m, FEATURES,
        partitions=3, full_feature_names=True,
    )
    out = got.toArrow()
    assert out.column_names == single.column_names
    assert out.num_rows == single.num_rows
    assert_bit_equal(out.cast(single.schema), single)
