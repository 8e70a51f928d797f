"""Time series plugin for ssl-core: TS2Vec and masked value prediction on UCR/UEA data.

Components (entry points, loaded lazily by ssl-core): encoders ``timeseries.ts2vec``,
``timeseries.inception_time``, ``timeseries.tst``, ``timeseries.patchtst`` (tsai);
views ``timeseries.crops``, ``timeseries.timestamp_mask``, ``timeseries.subsequence_mask``;
objectives ``timeseries.ts2vec``, ``timeseries.mvp``; evaluator ``timeseries.svm``;
datasets ``timeseries.ucr``, ``timeseries.arrays``; recipes ``timeseries.ts2vec``, ``timeseries.mvp``.

Importing this package does not import tsai or aeon: tsai is imported when a tsai
encoder is built, aeon when a UCR/UEA dataset is loaded.

Example:
    >>> import ssl_timeseries
    >>> "TS2VecEncoder" in ssl_timeseries.__all__
    True
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import functional
from ._data import (
    MemmapSeriesDataset,
    SeriesDataError,
    SeriesDataset,
    arrays,
    collate_series,
    known_datasets,
    memmap,
    ts2vec_normalize,
    ucr,
)
from ._encoders import TS2VecEncoder
from ._evaluators import SVMEvaluator, fit_svm, instance_representations
from ._objectives import MVPObjective, TS2VecObjective
from ._recipes import PUBLISHED_TS2VEC, mvp, ts2vec, ts2vec_steps
from ._tsai import InceptionTimeEncoder, PatchTSTEncoder, TSTEncoder
from ._views import CropViews, SubsequenceMaskViews, TimestampMaskViews

try:
    __version__: str = version("ssl-timeseries")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "PUBLISHED_TS2VEC",
    "CropViews",
    "InceptionTimeEncoder",
    "MVPObjective",
    "MemmapSeriesDataset",
    "PatchTSTEncoder",
    "SVMEvaluator",
    "SeriesDataError",
    "SeriesDataset",
    "SubsequenceMaskViews",
    "TS2VecEncoder",
    "TS2VecObjective",
    "TSTEncoder",
    "TimestampMaskViews",
    "__version__",
    "arrays",
    "collate_series",
    "fit_svm",
    "functional",
    "instance_representations",
    "known_datasets",
    "memmap",
    "mvp",
    "ts2vec",
    "ts2vec_normalize",
    "ts2vec_steps",
    "ucr",
]
