"""image_metadata: format, size, mode, brightness and dominant colour of an image."""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from typing import cast

from PIL import Image, ImageStat, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from plugins.contract import Plugin

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000


def _decode_image(data: str) -> bytes:
    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]  # accept data URLs as browsers produce them
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("image_base64 is not valid base64") from exc
    if not raw:
        raise ValueError("image_base64 decodes to no bytes")
    if len(raw) > MAX_IMAGE_BYTES:
        raise ValueError(f"image is larger than {MAX_IMAGE_BYTES} bytes")
    return raw


def _open_image(raw: bytes) -> Image.Image:
    """Open and fully decode ``raw``; any failure means "not an image we can read"."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(raw))
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"image has more than {MAX_IMAGE_PIXELS} pixels")
            image.load()
        except Image.DecompressionBombWarning as exc:
            raise ValueError(f"image has more than {MAX_IMAGE_PIXELS} pixels") from exc
        except UnidentifiedImageError as exc:
            raise ValueError("image_base64 is not an image in a supported format") from exc
        except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ValueError(f"image cannot be decoded: {exc}") from exc
    return image


# A 2x2 red PNG: the smallest useful example for the API's documentation.
EXAMPLE_IMAGE = (
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4"
    "nGM8ISfHwMDAxMDAwMDAAAANBAEIfXHKZgAAAABJRU5ErkJggg=="
)


class ImageMetadataInput(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"image_base64": EXAMPLE_IMAGE}]})

    image_base64: str = Field(
        min_length=1,
        max_length=(MAX_IMAGE_BYTES * 4) // 3 + 1024,
        description="The image file, base64-encoded (a data: URL is accepted).",
        json_schema_extra={"format": "image-base64", "contentEncoding": "base64"},
    )

    @field_validator("image_base64")
    @classmethod
    def must_be_a_readable_image(cls, value: str) -> str:
        _open_image(_decode_image(value.strip()))
        return value.strip()


class ImageMetadataOutput(BaseModel):
    format: str
    width: int
    height: int
    mode: str
    mean_brightness: float = Field(description="Mean luminance, 0 (black) to 255 (white).")
    dominant_colour: str = Field(description="The most frequent colour, as #rrggbb.")


class ImageMetadataPlugin(Plugin):
    name = "image_metadata"
    version = "1.0.0"
    description = "Reads an image's format, size, mode, mean brightness and dominant colour."
    Input = ImageMetadataInput
    Output = ImageMetadataOutput
    timeout_s = 20.0

    def run(self, payload: ImageMetadataInput) -> ImageMetadataOutput:
        image = _open_image(_decode_image(payload.image_base64))
        rgb = image.convert("RGB")
        brightness = ImageStat.Stat(rgb.convert("L")).mean[0]
        # Colour counting on a small copy keeps the cost flat for big images; the
        # palette is reduced so near-identical shades count as one colour.
        sample = rgb.copy()
        sample.thumbnail((128, 128))
        quantised = sample.quantize(colors=16, method=Image.Quantize.MEDIANCUT)
        palette = quantised.getpalette() or []
        counts = quantised.getcolors() or [(1, 0)]
        _, index = max(counts)
        start = cast(int, index) * 3
        red, green, blue = palette[start : start + 3]
        return ImageMetadataOutput(
            format=image.format or "UNKNOWN",
            width=image.width,
            height=image.height,
            mode=image.mode,
            mean_brightness=round(brightness, 2),
            dominant_colour=f"#{red:02x}{green:02x}{blue:02x}",
        )
