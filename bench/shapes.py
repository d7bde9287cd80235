"""Time to generate the built-in `shapes` data set and to export it as COCO json + PNG folder.

    .venv/bin/python bench/shapes.py                    # 200 images at the default 160 px
    .venv/bin/python bench/shapes.py --images 500 --size 256
"""

from __future__ import annotations

import argparse
import tempfile
import time

from objdet.data.coco import write_coco_dataset
from objdet.data.shapes import ShapesDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=160)
    args = parser.parse_args()
    ds = ShapesDataset("train", length=args.images, image_size=args.size)
    start = time.perf_counter()
    objects = sum(len(ds[i][1]["boxes"]) for i in range(len(ds)))
    generate = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        write_coco_dataset(ds, out)
        export = time.perf_counter() - start
    print(f"{args.images} images of {args.size} px, {objects} objects: generate {generate:.2f} s "
          f"({1000 * generate / args.images:.1f} ms/image), export to COCO {export:.2f} s")


if __name__ == "__main__":
    main()
