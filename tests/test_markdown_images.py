"""Images in Prefect artifacts: local files inlined as data URIs the UI can show; URLs and missing files kept
readable."""
from __future__ import annotations

import base64

import numpy as np

from mnist_etc.markdown_images import inline_images


def test_local_images_are_inlined_and_the_rest_left_readable(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((4, 4), 128, dtype=np.uint8)).save(tmp_path / "plot.png")
    md = inline_images("# t\n![a plot](plot.png) ![web](https://example.org/x.png) ![gone](nope.png)\n", tmp_path)
    data = md.split("](data:image/png;base64,", 1)[1].split(")", 1)[0]
    assert base64.b64decode(data) == (tmp_path / "plot.png").read_bytes()
    assert "![web](https://example.org/x.png)" in md
    assert f"*gone: `{tmp_path / 'nope.png'}`*" in md
    absolute = inline_images(f"![abs]({(tmp_path / 'plot.png').resolve()})", tmp_path / "elsewhere")
    assert absolute.startswith("![abs](data:image/png;base64,")
