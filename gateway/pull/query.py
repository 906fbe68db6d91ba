"""What a pull asks a source for: one study, an accession number, or a query.  Pure.

A query matches at study level on the study date and the modalities in the study, and (when
a body part is given) at series level: a study is taken when one of its series has one of the
modalities asked for (any, when none is given) and that body part.  Body Part Examined is a
series attribute, so archives cannot match it at study level; asking at series level is what
makes "chest CR/DX" mean the same on every archive.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_DATE = re.compile(r"^\d{8}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$")


class PullQuery(BaseModel):
    """One of: ``study_uid``, ``accession``, or a query (``modalities``, ``body_part``, dates)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    study_uid: str | None = Field(default=None, max_length=64, description="a Study Instance UID")
    accession: str | None = Field(default=None, min_length=1, max_length=16, description="an Accession Number")
    modalities: list[str] = Field(default_factory=list, description="modalities in the study, e.g. [CR, DX]")
    body_part: str | None = Field(
        default=None, min_length=1, max_length=16, description="Body Part Examined of a series, e.g. CHEST"
    )
    date_from: str | None = Field(default=None, description="first study date, YYYYMMDD")
    date_to: str | None = Field(default=None, description="last study date, YYYYMMDD")

    @field_validator("study_uid")
    @classmethod
    def _uid(cls, value: str | None) -> str | None:
        if value is not None and not _UID.match(value):
            raise ValueError(f"{value!r} is not a UID (digits and dots, at most 64 characters)")
        return value

    @field_validator("modalities", mode="before")
    @classmethod
    def _modalities(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            value = [str(part).strip().upper() for part in value]
            for part in value:
                if not _MODALITY.match(part):
                    raise ValueError(f"{part!r} is not a modality (e.g. CR, DX)")
            return list(dict.fromkeys(value))
        return value

    @field_validator("body_part")
    @classmethod
    def _body_part(cls, value: str | None) -> str | None:
        return value.strip().upper() if value is not None else None

    @field_validator("date_from", "date_to")
    @classmethod
    def _date(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip().replace("-", "")
        if not _DATE.match(text):
            raise ValueError(f"{value!r} is not a date: give YYYYMMDD (or YYYY-MM-DD)")
        try:
            datetime.strptime(text, "%Y%m%d")  # a calendar date: no time zone
        except ValueError:
            raise ValueError(f"{value!r} is not a calendar date") from None
        return text

    @model_validator(mode="after")
    def _one_kind(self) -> PullQuery:
        kinds = [self.study_uid is not None, self.accession is not None, self.is_search]
        if sum(kinds) != 1:
            raise ValueError(
                "give exactly one of: a study UID, an accession number, or a query (modalities, body part, date range)"
            )
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(f"date_from {self.date_from} is after date_to {self.date_to}")
        return self

    @property
    def is_search(self) -> bool:
        return bool(self.modalities or self.body_part or self.date_from or self.date_to)

    @property
    def study_date(self) -> str:
        """The DICOM date range matching (``20250101-20250107``, ``20250101-``), or '' for any date."""
        if not (self.date_from or self.date_to):
            return ""
        if self.date_from == self.date_to:
            return self.date_from or ""
        return f"{self.date_from or ''}-{self.date_to or ''}"

    def describe(self) -> str:
        """For logs and listings: the accession number is shown as given, never its value (PHI)."""
        if self.study_uid is not None:
            return f"study {self.study_uid}"
        if self.accession is not None:
            return "accession number (given)"
        parts = []
        if self.modalities:
            parts.append("modality " + ",".join(self.modalities))
        if self.body_part:
            parts.append(f"body part {self.body_part}")
        if self.date_from or self.date_to:
            parts.append(f"dates {self.date_from or '…'}-{self.date_to or '…'}")
        return ", ".join(parts)


@dataclass(frozen=True)
class StudyMatch:
    """What a study-level answer (C-FIND or QIDO-RS) says about one study."""

    study_instance_uid: str
    study_date: str = ""
    modalities: tuple[str, ...] = ()
    sop_classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeriesMatch:
    """What a series-level answer says about one series."""

    modality: str
    body_part: str


def study_answer_fits(query: PullQuery, study: StudyMatch) -> bool:
    """Whether a study-level answer fits the query (archives may match loosely; we check again)."""
    if query.study_uid is not None:
        return study.study_instance_uid == query.study_uid
    if query.date_from and study.study_date and study.study_date < query.date_from:
        return False
    if query.date_to and study.study_date and study.study_date > query.date_to:
        return False
    if query.modalities and study.modalities:
        return bool(set(study.modalities) & set(query.modalities))
    return True


def series_fit(query: PullQuery, series: Sequence[SeriesMatch]) -> bool:
    """Whether one series has a wanted modality and the body part (compared without case)."""
    if query.body_part is None and not query.modalities:
        return True
    for item in series:
        if query.modalities and item.modality.strip().upper() not in query.modalities:
            continue
        if query.body_part is not None and item.body_part.strip().upper() != query.body_part:
            continue
        return True
    return False


def needs_series_check(query: PullQuery) -> bool:
    return query.is_search and query.body_part is not None
