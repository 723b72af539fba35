"""image_metadata: format, size, mode, brightness and dominant colour of an image."""

from __future__ import annotations

import base64
import io
import math
import warnings
from typing import cast

from PIL import Image, ImageStat, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from plugins.contract import Plugin
from plugins.validation.semantic import semantic_error

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
# The limit is on the text, where the schema can state it: base64 of MAX_IMAGE_BYTES,
# with room for a data: URL's prefix.
MAX_IMAGE_BASE64_LENGTH = 4 * math.ceil(MAX_IMAGE_BYTES / 3) + 256
# Standard, padded base64 of at least one byte, optionally as a data: URL: exactly what
# base64.b64decode(validate=True) decodes. It ends in (?![\s\S]), not $: Python's $ (in
# the fuzzer's and jsonschema's engine) also matches before a final newline, ECMA's does
# not; the lookahead means "the end" to both. Linear: each quartet is tried once.
BASE64_ALPHABET = "[A-Za-z0-9+/]"
IMAGE_BASE64_PATTERN = (
    rf"^(?:data:[^,]*,)?(?:{BASE64_ALPHABET}{{4}})*"
    rf"(?:{BASE64_ALPHABET}{{4}}|{BASE64_ALPHABET}{{3}}=|{BASE64_ALPHABET}{{2}}==)(?![\s\S])"
)


def _decode_image(data: str) -> bytes:
    """The image's bytes; ``data`` matches IMAGE_BASE64_PATTERN (checked by its Field)."""
    if data.startswith("data:"):
        data = data.split(",", 1)[1]  # accept data URLs as browsers produce them
    return base64.b64decode(data, validate=True)


def _open_image(raw: bytes) -> Image.Image:
    """Open and fully decode ``raw``; any failure means "not an image we can read".

    What fails here passes the schema (it is well-formed base64), so each refusal
    is semantic.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(raw))
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise _too_many_pixels()
            image.load()
        except PydanticCustomError:
            raise
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise _too_many_pixels() from exc
        except MemoryError:  # the sandbox's memory limit, not a fault of the input
            raise
        except UnidentifiedImageError as exc:
            raise semantic_error(
                "image_unsupported", "image_base64 is not an image in a supported format"
            ) from exc
        except Exception as exc:  # a decoder's failure on crafted bytes can be of any kind
            raise semantic_error(
                "image_undecodable", "image cannot be decoded: {reason}", reason=str(exc)
            ) from exc
    return image


def _too_many_pixels() -> PydanticCustomError:
    return semantic_error(
        "image_too_large",
        "image has more than {max_pixels} pixels",
        max_pixels=MAX_IMAGE_PIXELS,
    )


# A 2x2 red PNG: the smallest useful example for the API's documentation.
EXAMPLE_IMAGE = (
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4"
    "nGM8ISfHwMDAxMDAwMDAAAANBAEIfXHKZgAAAABJRU5ErkJggg=="
)


class ImageMetadataInput(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"image_base64": EXAMPLE_IMAGE}]},
        regex_engine="python-re",  # the pattern's lookahead; Rust's engine has none
    )

    image_base64: str = Field(
        min_length=4,
        max_length=MAX_IMAGE_BASE64_LENGTH,
        pattern=IMAGE_BASE64_PATTERN,
        description="The image file, base64-encoded with padding (a data: URL is accepted). "
        "It must decode as an image in a supported format: that is checked semantically.",
        json_schema_extra={"format": "image-base64", "contentEncoding": "base64"},
    )

    @field_validator("image_base64")
    @classmethod
    def must_be_a_readable_image(cls, value: str) -> str:
        _open_image(_decode_image(value))
        return value


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
