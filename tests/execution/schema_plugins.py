"""Plugins whose schemas are easy to get wrong: computed output fields, look-alike names."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, computed_field

from plugins.contract import Plugin


class WordsInput(BaseModel):
    text: str


class CountedWords(BaseModel):
    model_config = ConfigDict(extra="forbid")

    words: int
    note: str = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def doubled(self) -> int:
        return self.words * 2


class ComputedOutputPlugin(Plugin):
    name = "computed_output"
    version = "1.0"
    isolation = "thread"
    Input = WordsInput
    Output = CountedWords

    def run(self, payload: WordsInput) -> CountedWords:
        return CountedWords(words=len(payload.text.split()))


class LookalikeOutput(BaseModel):
    first: int


class LookalikeUnderscoreOutput(BaseModel):
    second: str


class LookalikePlugin(Plugin):
    name = "lookalike"
    version = "1.0"
    isolation = "thread"
    Input = WordsInput
    Output = LookalikeOutput

    def run(self, payload: WordsInput) -> LookalikeOutput:
        return LookalikeOutput(first=1)


class LookalikeUnderscorePlugin(Plugin):
    name = "lookalike_"  # once the same component prefix as "lookalike"
    version = "1.0"
    isolation = "thread"
    Input = WordsInput
    Output = LookalikeUnderscoreOutput

    def run(self, payload: WordsInput) -> LookalikeUnderscoreOutput:
        return LookalikeUnderscoreOutput(second="two")


SCHEMA_PLUGINS = [
    f"tests.execution.schema_plugins.{name}"
    for name in ("ComputedOutputPlugin", "LookalikePlugin", "LookalikeUnderscorePlugin")
]
