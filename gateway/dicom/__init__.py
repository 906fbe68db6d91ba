"""The DICOM node: association policy, the C-STORE/C-ECHO SCP, TLS and the C-ECHO SCU."""
