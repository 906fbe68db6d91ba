"""Pure functions that turn a GazeX analysis into standard DICOM: TID 1500 SR, SEG and GSPS."""

__all__: list[str] = []
