"""REFLACX's file layout and column names, exactly as the dataset publishes them.

Sources (REFLACX 1.0.0, Bigolin Lanfredi et al., PhysioNet, doi:10.13026/e0dj-8498):

- the dataset description on PhysioNet ("The columns of each of the tables are described
  below"), which lists every column of ``metadata_phase_<phase>.csv``, ``fixations.csv``,
  ``timestamps_transcription.csv``, ``anomaly_location_ellipses.csv`` and
  ``chest_bounding_box.csv``;
- the code that built the dataset, ``post_processing_and_dataset_generation/create_main_table.py``
  in github.com/ricbl/eyetracking (column order, CRLF line endings, rounding, the metadata
  columns ``id, split, eye_tracking_data_discarded, image, dicom_id, subject_id,
  image_size_x, image_size_y`` followed by the label columns in sorted order, and the
  ellipse columns ``xmin, ymin, xmax, ymax, certainty`` followed by the same labels);
- ``examples_and_paper_numbers/interrater.py`` there, for the label names of each phase.

Note: the PhysioNet text calls the transcription table ``timestamps_transcriptions.csv`` in
one heading, but the files (and the folder listing on the same page) are named
``timestamps_transcription.csv``.
"""

from __future__ import annotations

METADATA_FILE = "metadata_phase_{phase}.csv"
MAIN_DATA = "main_data"
FIXATIONS_FILE = "fixations.csv"
TRANSCRIPTION_TIMESTAMPS_FILE = "timestamps_transcription.csv"
TRANSCRIPTION_FILE = "transcription.txt"
ELLIPSES_FILE = "anomaly_location_ellipses.csv"
CHEST_BOX_FILE = "chest_bounding_box.csv"

#: The first columns of ``metadata_phase_<phase>.csv``; the label columns follow, sorted.
METADATA_COLUMNS: tuple[str, ...] = (
    "id",
    "split",
    "eye_tracking_data_discarded",
    "image",
    "dicom_id",
    "subject_id",
    "image_size_x",
    "image_size_y",
)

#: Labels with a certainty (0: not selected, 1 Unlikely ... 5 Consistent with), phase 1.
CERTAINTY_LABELS_PHASE_1: tuple[str, ...] = (
    "Airway wall thickening",
    "Atelectasis",
    "Consolidation",
    "Emphysema",
    "Enlarged cardiac silhouette",
    "Fibrosis",
    "Fracture",
    "Groundglass opacity",
    "Mass",
    "Nodule",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary edema",
    "Wide mediastinum",
)

#: Labels with a certainty, phases 2 and 3.
CERTAINTY_LABELS_PHASES_2_3: tuple[str, ...] = (
    "Abnormal mediastinal contour",
    "Acute fracture",
    "Atelectasis",
    "Consolidation",
    "Enlarged cardiac silhouette",
    "Enlarged hilum",
    "Groundglass opacity",
    "Hiatal hernia",
    "High lung volume / emphysema",
    "Interstitial lung disease",
    "Lung nodule or mass",
    "Pleural abnormality",
    "Pneumothorax",
    "Pulmonary edema",
)

#: Labels recorded as present or absent only (Boolean), by phase.
BOOLEAN_LABELS_PHASE_1: tuple[str, ...] = ("Quality issue", "Support devices")
BOOLEAN_LABELS_PHASES_2_3: tuple[str, ...] = ("Support devices",)

#: The free-text label column: additional labels separated by "|" (Boolean in the ellipse table).
OTHER_LABEL = "Other"

#: Certainty codes.
CERTAINTY_NAMES: dict[int, str] = {
    0: "not selected",
    1: "Unlikely",
    2: "Less Likely",
    3: "Possibly",
    4: "Suspicious for/Probably",
    5: "Consistent with",
}


def label_columns(phase: int) -> tuple[str, ...]:
    """The label columns of a phase's metadata and ellipse tables, in the published (sorted) order."""
    if phase == 1:
        labels = CERTAINTY_LABELS_PHASE_1 + BOOLEAN_LABELS_PHASE_1
    elif phase in (2, 3):
        labels = CERTAINTY_LABELS_PHASES_2_3 + BOOLEAN_LABELS_PHASES_2_3
    else:
        raise ValueError(f"REFLACX has phases 1, 2 and 3, not {phase}")
    return tuple(sorted((*labels, OTHER_LABEL)))


def boolean_labels(phase: int) -> tuple[str, ...]:
    return BOOLEAN_LABELS_PHASE_1 if phase == 1 else BOOLEAN_LABELS_PHASES_2_3


#: ``fixations.csv``, in the published order.
FIXATION_COLUMNS: tuple[str, ...] = (
    "timestamp_start_fixation",
    "timestamp_end_fixation",
    "x_position",
    "y_position",
    "pupil_area_normalized",
    "angular_resolution_x_pixels_per_degree",
    "angular_resolution_y_pixels_per_degree",
    "window_width",
    "window_level",
    "xmin_shown_from_image",
    "ymin_shown_from_image",
    "xmax_shown_from_image",
    "ymax_shown_from_image",
    "xmin_in_screen_coordinates",
    "ymin_in_screen_coordinates",
    "xmax_in_screen_coordinates",
    "ymax_in_screen_coordinates",
)

#: ``timestamps_transcription.csv``.
TRANSCRIPTION_COLUMNS: tuple[str, ...] = ("word", "timestamp_start_word", "timestamp_end_word")

#: ``chest_bounding_box.csv``, and the first columns of ``anomaly_location_ellipses.csv``.
BOX_COLUMNS: tuple[str, ...] = ("xmin", "ymin", "xmax", "ymax")
CERTAINTY_COLUMN = "certainty"
