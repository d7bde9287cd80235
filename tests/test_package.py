"""The package surface: imports, lazy public names, the command's help."""

import subprocess
import sys

import pytest

import objdet
from objdet.errors import AnnotationError, ObjdetError


def test_unknown_public_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        objdet.no_such_name  # noqa: B018


def test_error_message_names_file_and_record():
    err = AnnotationError("box has zero width", path="ann.json", record="annotation id 7")
    assert isinstance(err, ObjdetError)
    assert str(err) == "ann.json: record annotation id 7: box has zero width"
    assert err.path == "ann.json" and err.record == "annotation id 7"


def test_command_help_lists_demo():
    out = subprocess.run([sys.executable, "-m", "objdet.cli", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in out.stdout
