"""Wafer for Python: online features, point-in-time training data on Wafer's own engine, Spark,
and Python transforms.

- :class:`Client`: ``get_online_features`` (Feast-shaped ``to_dict()``), ``push``, the control plane.
- :func:`training_data`: ``wafer training-data`` in process (pandas / Arrow in, Arrow out).
- :func:`run`: a stream transform over a table of events.
- :mod:`wafer.spark`: the same training data on a Spark cluster (``mapInArrow``).
- :func:`stream_transform` / :func:`build`: write a transform as a decorated function and build it.
"""

from . import errors
from .authoring import BadInput, Event, log, stream_transform
from .authoring import TRANSFORMS, DeclarationError, _where  # noqa: F401  (used by built components)
from .authoring import build
from .client import Client, OnlineResponse
from .errors import WaferError
from .offline import TransformEventError, run, to_pandas, training_data

__all__ = [
    "BadInput",
    "Client",
    "Event",
    "build",
    "stream_transform",
    "OnlineResponse",
    "TransformEventError",
    "WaferError",
    "errors",
    "log",
    "run",
    "to_pandas",
    "training_data",
]
__version__ = "0.1.0"
