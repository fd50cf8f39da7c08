"""Images and numbers: preprocessing, image folders, synthetic images, metrics, agreement of logits.

:mod:`.preprocessing` (the one preprocessing definition every stage and the C++
example follow), :mod:`.dicom` (DICOM files to the luminance it takes), :mod:`.image_folder` (class folders, split files),
:mod:`.synthetic` (the chest-X-ray-like images the project draws itself),
:mod:`.metrics` (accuracy, confusion matrices) and :mod:`.agreement` (how two
sets of logits compare). Imports only :mod:`dacovid_export.core`.
"""
