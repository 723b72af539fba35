import base64
import io
import itertools
import random
import re
import string
import time

import pytest
from PIL import Image

from plugins.builtin.image_metadata import (
    MAX_IMAGE_BASE64_LENGTH,
    MAX_IMAGE_PIXELS,
    ImageMetadataInput,
    ImageMetadataPlugin,
)
from plugins.builtin.text_stats import MAX_TERM_LENGTH, SENTENCE_END, WORD, TextStatsPlugin
from plugins.testing import run_plugin

pytestmark = pytest.mark.any_database

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


# Linear cost at the size limit, measured on a developer machine through run_plugin (process
# round trip included): 0.05-0.4 s per input, the slowest being many distinct words.
# The quadratic sentence regex this guards against took ~80 s on 80,000 dots and would take
# hours on 1,000,000. 6 s is ~20x the linear cost: a slow CI machine passes, a super-linear
# regression fails (or trips the plugin's own 10 s timeout, which sets ``error``).
LINEAR_TIME_BOUND_S = 6.0

DISTINCT_WORDS = " ".join(
    "".join(letters)
    for letters in itertools.islice(itertools.product(string.ascii_lowercase, repeat=4), 199_999)
)


# (text, word count, sentence count, top term or None); each text is (nearly) 1,000,000
# characters long and can make a careless regex backtrack, or yields a great many matches.
@pytest.mark.parametrize(
    ("text", "words", "sentences", "top_term"),
    [
        pytest.param("." * 999_999 + "x", 1, 1, None, id="dots-then-letter"),
        pytest.param("!?" * 499_999 + "x", 1, 1, None, id="marks-then-letter"),
        pytest.param("…" * 999_999 + "x", 1, 1, None, id="ellipses-then-letter"),
        pytest.param(".!?…" * 249_999 + "x", 1, 1, None, id="mixed-marks-then-letter"),
        pytest.param("." * 999_999 + " ", 0, 1, None, id="dots-then-space"),
        pytest.param(". " * 499_999, 0, 499_999, None, id="many-sentence-ends"),
        # Words longer than MAX_TERM_LENGTH are counted but never listed as terms.
        pytest.param("a'" * 499_999 + "x", 1, 1, None, id="apostrophe-chain"),
        pytest.param("a'" * 499_999, 1, 1, None, id="dangling-apostrophe"),
        pytest.param("a’" * 499_999 + "x", 1, 1, None, id="curly-apostrophe-chain"),
        pytest.param("a''" * 333_333, 333_333, 1, None, id="double-apostrophes"),
        pytest.param("'’" * 499_999 + "x", 1, 1, None, id="apostrophes-only"),
        pytest.param("1." * 499_999 + "x", 2, 1, None, id="number-chain-dots"),
        pytest.param("1," * 499_999, 1, 1, None, id="number-chain-commas"),
        pytest.param("a" * 999_999 + ".", 1, 1, None, id="one-long-word"),
        pytest.param("a " * 499_999, 499_999, 1, None, id="many-words"),
        pytest.param("a." * 499_999 + "x", 500_000, 1, None, id="words-and-dots"),
        pytest.param("a1" * 500_000, 1_000_000, 1, None, id="letters-and-digits"),
        pytest.param("_" * 999_999 + "x", 1, 1, None, id="underscores"),
        pytest.param("x" + " " * 999_999, 1, 1, None, id="trailing-whitespace"),
        pytest.param(DISTINCT_WORDS, 199_999, 1, "aaaa", id="distinct-terms"),
    ],
)
def test_text_stats_runs_in_linear_time_on_pathological_input(text, words, sentences, top_term):
    start = time.perf_counter()
    result, error = run_plugin(TextStatsPlugin, {"text": text})
    elapsed = time.perf_counter() - start
    assert error is None
    assert elapsed < LINEAR_TIME_BOUND_S
    assert (result["character_count"], result["word_count"], result["sentence_count"]) == (
        len(text),
        words,
        sentences,
    )
    top_terms = [term["term"] for term in result["top_terms"]]
    assert top_terms[:1] == ([top_term] if top_term else [])


MARKS = ".!?…"


def is_letter(char):
    return char.isalnum() and not char.isdecimal()  # what [^\W\d_] means


def reference_words(text):
    """Letters joined by single apostrophes, or digits joined by single dots or commas."""
    words, i = [], 0
    while i < len(text):
        if is_letter(text[i]) or text[i].isdecimal():
            part, joiners = (is_letter, "'’") if is_letter(text[i]) else (str.isdecimal, ".,")
            end = i + 1
            while end < len(text) and (
                part(text[end])
                or (text[end] in joiners and end + 1 < len(text) and part(text[end + 1]))
            ):
                end += 1
            words.append(text[i:end])
            i = end
        else:
            i += 1
    return words


def reference_sentence_count(text, words):
    """Runs of marks followed by whitespace or the end, plus an unterminated last sentence."""
    count, i = 0, 0
    while i < len(text):
        if text[i] in MARKS:
            end = i
            while end < len(text) and text[end] in MARKS:
                end += 1
            count += end == len(text) or text[end].isspace()
            i = end
        else:
            i += 1
    stripped = text.rstrip()
    return count + bool(words and stripped[-1] not in MARKS)


# The patterns before the linear-time fix: quadratic on long runs, fine on short strings.
ORIGINAL_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*|\d+(?:[.,]\d+)*")
ORIGINAL_SENTENCE_END = re.compile(r"[.!?…]+(?=\s|$)")


def test_text_stats_counts_match_a_reference_on_random_text():
    rng = random.Random(20_240_601)
    alphabet = "a1.!?… \n\t'’,é_"
    for _ in range(300):
        text = "".join(rng.choices(alphabet, k=rng.randint(1, 30)))
        words = reference_words(text)
        assert WORD.findall(text) == ORIGINAL_WORD.findall(text) == words, text
        assert len(SENTENCE_END.findall(text)) == len(ORIGINAL_SENTENCE_END.findall(text)), text
        result, error = run_plugin(TextStatsPlugin, {"text": text})
        assert error is None, text
        assert result["word_count"] == len(words), text
        assert result["sentence_count"] == reference_sentence_count(text, words), text


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
        ({"image_base64": "not base64 at all!"}, "should match pattern"),
        ({"image_base64": "===="}, "should match pattern"),
        ({"image_base64": "0"}, "at least 4 characters"),  # schemathesis' find, now the schema's
        ({"image_base64": " " + encode(Image.new("L", (2, 2)), "PNG")}, "should match pattern"),
        ({"image_base64": ""}, "at least 4 characters"),
        ({}, "Field required"),
    ],
)
def test_image_metadata_refuses_what_its_schema_refuses_as_plain_validation_errors(
    payload, message
):
    result, error = run_plugin(ImageMetadataPlugin, payload)
    assert result is None
    assert error["error"]["type"] == "ValidationError"
    (entry,) = error["error"]["details"]["errors"]
    assert message in entry["message"]
    assert "semantic" not in entry


def _semantic_refusal(payload):
    result, error = run_plugin(ImageMetadataPlugin, payload)
    assert result is None
    assert error["error"]["type"] == "ValidationError"
    (entry,) = error["error"]["details"]["errors"]
    assert entry["semantic"] is True
    assert entry["location"] == ["image_base64"]
    return entry


def test_image_metadata_marks_well_formed_base64_that_is_no_image_as_semantic():
    entry = _semantic_refusal({"image_base64": base64.b64encode(b"plain text, no image").decode()})
    assert entry["type"] == "image_unsupported"
    assert "not an image" in entry["message"]


def test_image_metadata_rejects_a_truncated_image_as_semantic():
    raw = base64.b64decode(encode(Image.new("RGB", (200, 200), (1, 2, 3)), "PNG"))
    truncated = base64.b64encode(raw[: len(raw) // 2]).decode()
    entry = _semantic_refusal({"image_base64": truncated})
    assert entry["type"] == "image_undecodable"
    assert entry["message"].startswith("image cannot be decoded: ")


def test_image_metadata_running_out_of_memory_is_no_refusal_of_the_input(monkeypatch):
    """Memory is the sandbox's limit (PluginResourceLimit), never a semantic refusal."""

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(Image, "open", exhausted)
    with pytest.raises(MemoryError):
        ImageMetadataInput.model_validate({"image_base64": encode(Image.new("L", (2, 2)), "PNG")})


def test_image_metadata_refuses_too_many_pixels_as_semantic():
    big = Image.new("1", (8000, 5001))  # 40,008,000 pixels, a few kB as PNG
    entry = _semantic_refusal({"image_base64": encode(big, "PNG")})
    assert entry["type"] == "image_too_large"
    assert entry["message"] == f"image has more than {MAX_IMAGE_PIXELS} pixels"


def test_image_metadata_schema_states_what_its_validator_checks_of_the_text():
    from jsonschema import Draft202012Validator

    schema = ImageMetadataPlugin.Input.model_json_schema()
    validator = Draft202012Validator(schema)
    image = encode(Image.new("RGB", (2, 2)), "PNG")
    for value in ["0", "AAA", "AAAAA", "AA=A", " " + image, image + "\n", "data:x" + image, ""]:
        assert not validator.is_valid({"image_base64": value}), value
        _, error = run_plugin(ImageMetadataPlugin, {"image_base64": value})
        assert "semantic" not in error["error"]["details"]["errors"][0], value
    for value in [image, "data:image/png;base64," + image]:
        assert validator.is_valid({"image_base64": value})
        result, error = run_plugin(ImageMetadataPlugin, {"image_base64": value})
        assert error is None, error
        assert result["width"] == 2
    assert schema["properties"]["image_base64"]["maxLength"] == MAX_IMAGE_BASE64_LENGTH


def test_text_stats_counts_overlong_words_but_does_not_list_them_as_terms():
    long_word = "b" * (MAX_TERM_LENGTH + 1)
    text = f"{long_word} {long_word} fits fits. {'c' * MAX_TERM_LENGTH}"
    result, error = run_plugin(TextStatsPlugin, {"text": text})
    assert error is None
    assert result["word_count"] == 5
    assert [t["term"] for t in result["top_terms"]] == ["fits", "c" * MAX_TERM_LENGTH]
