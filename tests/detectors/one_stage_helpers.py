"""Shared by the one-stage detector tests."""

from objdet.data.shapes import ShapesDataset


def two_object_shapes_image(size):
    """The first generated shapes image holding two objects (deterministic)."""
    data = ShapesDataset("train", length=20, image_size=size, max_objects=2)
    return next(data[i] for i in range(len(data)) if len(data.target(i)["boxes"]) == 2)
