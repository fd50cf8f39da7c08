"""Images and numbers: preprocessing, image folders, synthetic images, metrics, agreement of logits.

:mod:`.preprocessing` (the one preprocessing definition every stage and the C++
example follow), :mod:`.dicom` (DICOM files to the luminance it takes), :mod:`.image_folder` (class folders, split files),
:mod:`.synthetic` (the chest-X-ray-like images the project draws itself),
:mod:`.metrics` (accuracy, confusion matrices) and :mod:`.agreement` (how two
sets of logits compare). Imports only :mod:`dacovid_export.core`.
"""

from dacovid_export.data.agreement import measure_agreement
from dacovid_export.data.image_folder import labelled_images, read_split_file
from dacovid_export.data.metrics import classification_report
from dacovid_export.data.preprocessing import Preprocessing, load_image, preprocess

__all__ = [
    "Preprocessing",
    "load_image",
    "preprocess",
    "labelled_images",
    "read_split_file",
    "classification_report",
    "measure_agreement",
]
