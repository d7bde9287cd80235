"""The record checks moved to the torch-free `objdet.validate`; this name stays for readers written
against it."""

from objdet.validate import (  # noqa: F401
    CLIP_TOLERANCE, DataWarning, check_box, check_unique, inside_root, is_finite_number, polygon_problem,
    segmentation_problem, warn,
)
