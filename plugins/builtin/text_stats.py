"""text_stats: word and sentence counts, reading time and the most frequent terms."""

from __future__ import annotations

import math
import re
from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

from plugins.contract import Plugin

APOSTROPHES = "'\u2019"
SENTENCE_MARKS = ".!?…"
# Both patterns must stay linear on any text up to the 1,000,000-character limit: a slower
# regex spends the plugin's whole time limit on one request (and runs in C, holding the GIL).
# Possessive quantifiers (++, *+) never give characters back. Nothing follows either
# alternative, so backtracking could not change a match anyway; forbidding it makes that
# explicit and spares the engine its backtracking bookkeeping.
WORD = re.compile(rf"[^\W\d_]++(?:[{APOSTROPHES}][^\W\d_]++)*+|\d++(?:[.,]\d++)*+")
# A run of marks followed by whitespace or the end closes a sentence. The lookbehind starts a
# match only at the first mark of a run: without it "." * n + "x" retried every suffix of the
# run, O(n²) steps (hours at the size limit).
SENTENCE_END = re.compile(rf"(?<![{SENTENCE_MARKS}])[{SENTENCE_MARKS}]++(?=\s|$)")

# A longer "word" (a base64 blob, a run of letters) still counts as a word but is not listed
# as a term: terms are for reading, and a megabyte-long one would swell the result.
MAX_TERM_LENGTH = 64

# Frequent English function words: counting them as "terms" says nothing.
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves""".split()
)


class TextStatsInput(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"text": "Governed runs are recorded. Every one."}]}
    )

    text: str = Field(min_length=1, max_length=1_000_000, description="The text to analyse.")
    top_n: int = Field(default=5, ge=1, le=50, description="How many frequent terms to list.")
    words_per_minute: int = Field(default=200, ge=50, le=1000, description="Reading speed.")


class TermCount(BaseModel):
    term: str
    count: int


class TextStatsOutput(BaseModel):
    character_count: int
    word_count: int
    sentence_count: int
    average_word_length: float
    reading_time_seconds: int
    top_terms: list[TermCount]


class TextStatsPlugin(Plugin):
    name = "text_stats"
    version = "1.0.0"
    description = "Counts words and sentences, estimates reading time, lists frequent terms."
    Input = TextStatsInput
    Output = TextStatsOutput
    timeout_s = 10.0

    def run(self, payload: TextStatsInput) -> TextStatsOutput:
        words = WORD.findall(payload.text)
        sentences = len(SENTENCE_END.findall(payload.text))
        if words and not payload.text.rstrip().endswith(tuple(SENTENCE_MARKS)):
            sentences += 1  # a last sentence without final punctuation still counts
        terms = Counter(
            word.lower()
            for word in words
            if 1 < len(word) <= MAX_TERM_LENGTH
            and word.lower() not in STOP_WORDS
            and not word[0].isdigit()
        )
        # Ties are broken alphabetically so the result is deterministic.
        top = sorted(terms.items(), key=lambda item: (-item[1], item[0]))[: payload.top_n]
        return TextStatsOutput(
            character_count=len(payload.text),
            word_count=len(words),
            sentence_count=sentences,
            average_word_length=round(sum(map(len, words)) / len(words), 2) if words else 0.0,
            reading_time_seconds=math.ceil(len(words) * 60 / payload.words_per_minute),
            top_terms=[TermCount(term=term, count=count) for term, count in top],
        )
