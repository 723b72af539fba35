import base64
import io

import pytest
from PIL import Image

from plugins.builtin.image_metadata import ImageMetadataPlugin
from plugins.builtin.text_stats import TextStatsPlugin
from plugins.testing import run_plugin

TEXT = (
    "Governed execution keeps plugins honest. Every plugin run is recorded! "
    "Is every run recorded? Yes: every run, every plugin"
)


def encode(image: Image.Image, fmt: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def test_text_stats_counts_words_sentences_and_terms():
    result, error = run_plugin(TextStatsPlugin, {"text": TEXT, "top_n": 3})
    assert error is None
    assert result["word_count"] == 19
    assert result["sentence_count"] == 4
    assert result["character_count"] == len(TEXT)
    assert result["reading_time_seconds"] == 6  # 19 words at 200 wpm, rounded up
    assert result["top_terms"] == [
        {"term": "every", "count": 4},
        {"term": "run", "count": 3},
        {"term": "plugin", "count": 2},
    ]


def test_text_stats_handles_unicode_and_text_without_punctuation():
    result, _ = run_plugin(TextStatsPlugin, {"text": "Čaj naïve café l’été 2026"})
    assert result["word_count"] == 5
    assert result["sentence_count"] == 1
    assert {t["term"] for t in result["top_terms"]} == {"čaj", "naïve", "café", "l’été"}


def test_text_stats_reading_time_follows_the_reading_speed():
    result, _ = run_plugin(TextStatsPlugin, {"text": "word " * 300, "words_per_minute": 100})
    assert result["reading_time_seconds"] == 180


@pytest.mark.parametrize(
    "payload",
    [{}, {"text": ""}, {"text": 12}, {"text": "ok", "top_n": 0}, {"text": "x" * 1_000_001}],
)
def test_text_stats_rejects_bad_input(payload):
    result, error = run_plugin(TextStatsPlugin, payload)
    assert result is None
    assert error["error"]["type"] == "ValidationError"


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "RGB"), ("JPEG", "RGB"), ("GIF", "P")])
def test_image_metadata_reads_real_images(fmt, mode):
    image = Image.new("RGB", (64, 48), (20, 120, 220))
    image.paste((250, 250, 250), (0, 0, 8, 8))
    result, error = run_plugin(ImageMetadataPlugin, {"image_base64": encode(image, fmt)})
    assert error is None
    assert (result["format"], result["width"], result["height"], result["mode"]) == (
        fmt,
        64,
        48,
        mode,
    )
    red, green, blue = (int(result["dominant_colour"][i : i + 2], 16) for i in (1, 3, 5))
    assert abs(red - 20) <= 8
    assert abs(green - 120) <= 8
    assert abs(blue - 220) <= 8
    assert 90 < result["mean_brightness"] < 130


def test_image_metadata_brightness_spans_black_to_white():
    black, _ = run_plugin(
        ImageMetadataPlugin, {"image_base64": encode(Image.new("L", (4, 4), 0), "PNG")}
    )
    white, _ = run_plugin(
        ImageMetadataPlugin, {"image_base64": encode(Image.new("L", (4, 4), 255), "PNG")}
    )
    assert (black["mean_brightness"], black["dominant_colour"]) == (0.0, "#000000")
    assert (white["mean_brightness"], white["dominant_colour"]) == (255.0, "#ffffff")


def test_image_metadata_accepts_a_data_url():
    data = "data:image/png;base64," + encode(Image.new("RGB", (2, 2)), "PNG")
    result, error = run_plugin(ImageMetadataPlugin, {"image_base64": data})
    assert error is None
    assert result["width"] == 2


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"image_base64": "not base64 at all!"}, "not valid base64"),
        ({"image_base64": base64.b64encode(b"plain text, no image").decode()}, "not an image"),
        ({"image_base64": "===="}, "not valid base64"),
        ({"image_base64": ""}, "at least 1 character"),
        ({}, "Field required"),
    ],
)
def test_image_metadata_rejects_bad_input_as_validation_errors(payload, message):
    result, error = run_plugin(ImageMetadataPlugin, payload)
    assert result is None
    assert error["error"]["type"] == "ValidationError"
    assert message in error["error"]["details"][0]["message"]


def test_image_metadata_rejects_a_truncated_image():
    raw = base64.b64decode(encode(Image.new("RGB", (200, 200), (1, 2, 3)), "PNG"))
    truncated = base64.b64encode(raw[: len(raw) // 2]).decode()
    _, error = run_plugin(ImageMetadataPlugin, {"image_base64": truncated})
    assert error["error"]["type"] == "ValidationError"
