"""gicap-media: CDR engines for raster images, SVG and HTML files.

Each engine lives in its own module and is only imported when a file of its kind
arrives, so a worker that never sees an SVG never imports lxml:

* :mod:`gicap_media.images` — JPEG, PNG, GIF, TIFF, BMP, WebP, rebuilt from the decoded
  pixels with Pillow (family ``image``, switch ``metadata``);
* :mod:`gicap_media.svg` — SVG rebuilt element by element from an allowlist with lxml
  (family ``svg``, switches ``scripts``, ``foreign_objects``, ``hyperlinks``);
* :mod:`gicap_media.html` — HTML files sanitised with nh3 (family ``html``, no
  switches: always sanitised).
"""

from __future__ import annotations

from gicap import hookimpl
from gicap.cdr.types import DisarmRequest, DisarmResult

IMAGE_TYPES = ("jpeg", "png", "gif", "tiff", "bmp", "webp")
SVG_TYPES = ("svg",)
HTML_TYPES = ("html",)
FILE_TYPES = IMAGE_TYPES + SVG_TYPES + HTML_TYPES


@hookimpl
def gicap_file_types() -> list[str]:
    """The file types these engines disarm."""
    return list(FILE_TYPES)


@hookimpl
def gicap_disarm(request: DisarmRequest) -> DisarmResult | None:
    """Route a file to its engine; ``None`` for types this plugin does not claim."""
    kind = request.file_type.name
    if kind not in FILE_TYPES:
        return None
    max_size = request.limits.get("max_file_size")
    size = request.source.stat().st_size
    if max_size and size > max_size:
        return DisarmResult(
            "unprocessable", reason=f"file is {size} bytes, more than max_file_size {max_size}"
        )
    # Imported here so each engine's library loads only in workers that need it.
    if kind in IMAGE_TYPES:
        from gicap_media import images

        return images.disarm(request)
    if kind in SVG_TYPES:
        from gicap_media import svg

        return svg.disarm(request)
    from gicap_media import html

    return html.disarm(request)
