"""Pure functions that turn a GazeX analysis into standard DICOM: TID 1500 SR, SEG and GSPS.

The gateway uses only what is exported here::

    datasets = dicom_sr.encode(analysis, sources, analysis_id=job_id, content_datetime=when)

See ``README.md`` ("Outputs") for what each object contains.
"""

from dicom_sr.common import (
    DEFAULT_OUTPUTS,
    OUTPUT_KINDS,
    SERIES_DESCRIPTIONS,
    EncodeError,
    EncodeSettings,
    InstanceReference,
    Predecessor,
    SeriesNumbers,
)
from dicom_sr.encoder import encode
from dicom_sr.sr import trajectory_step

__all__ = [
    "DEFAULT_OUTPUTS",
    "OUTPUT_KINDS",
    "SERIES_DESCRIPTIONS",
    "EncodeError",
    "EncodeSettings",
    "InstanceReference",
    "Predecessor",
    "SeriesNumbers",
    "encode",
    "trajectory_step",
]
