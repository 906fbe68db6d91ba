"""Pure functions that turn a GazeX analysis into standard DICOM: TID 1500 SR, SEG and GSPS.

The gateway uses only what is exported here::

    datasets = dicom_sr.encode(analysis, sources, analysis_id=job_id, content_datetime=when)

See ``docs/outputs.md`` for what each object contains.
"""

from dicom_sr.codes import PRIVATE_SCHEME, coding_scheme_identification, terminology
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
from dicom_sr.uids import MAX_UID_ROOT_LENGTH, check_uid_root

__all__ = [
    "DEFAULT_OUTPUTS",
    "MAX_UID_ROOT_LENGTH",
    "OUTPUT_KINDS",
    "PRIVATE_SCHEME",
    "SERIES_DESCRIPTIONS",
    "EncodeError",
    "EncodeSettings",
    "InstanceReference",
    "Predecessor",
    "SeriesNumbers",
    "check_uid_root",
    "coding_scheme_identification",
    "encode",
    "terminology",
]
