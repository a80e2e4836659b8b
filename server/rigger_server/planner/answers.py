"""What a model must answer, as pydantic models, and how an answer is read.

Each model's JSON Schema goes to Ollama as `format`; the reply is read by
`read_answer`: `<think>…</think>` blocks and a ```json fence are taken off,
the rest must be one JSON object that validates. Checks a schema cannot
express (dependencies, options holding the answer) raise `AnswerInvalid`
too, so that the model is told what to fix.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rigger_server.limits import (
    MAX_PLANNED_CONTEXT_FILES,
    MAX_TEST_OPTIONS,
    Limits,
)

M = TypeVar("M", bound=BaseModel)
ENHANCEMENT_TYPES = ("acceptance_criteria", "implementation_notes", "clarification")
_THINK, _THOUGHT = "<think>", "</think>"
# The bounds of what a model may answer, as its JSON Schema says them: the
# request limits' defaults (limits.py). planner/bounds.py checks the server's
# own limits again, and an answer beyond them is sent back too.
_FIELD = Limits().max_field_chars
MAX_TASKS = 200
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.S)


class AnswerInvalid(ValueError):
    """A model's answer that cannot be used; the message says why, for the model."""


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class TaskAnswer(_Answer):
    """One task of a plan."""

    title: str = Field(min_length=1, max_length=200, description="Short imperative title")
    description: str = Field(
        default="", max_length=4000, description="What the task is about and why, from the PRD"
    )
    assignee: str | None = Field(
        default=None, max_length=_FIELD, description="Who does it; null when unknown"
    )
    due_date: str | None = Field(
        default=None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD or null"
    )
    context_files: list[Annotated[str, Field(max_length=_FIELD)]] = Field(
        default_factory=list,
        max_length=MAX_PLANNED_CONTEXT_FILES,
        description="Paths the PRD names that matter here",
    )
    depends_on: list[int] = Field(
        default_factory=list,
        max_length=MAX_TASKS,
        description="Numbers (1 = first) of the tasks in this list to finish first",
    )

    @field_validator("due_date")
    @classmethod
    def _real_date(cls, value: str | None) -> str | None:
        if value is not None:
            dt.date.fromisoformat(value)
        return value


class TaskListAnswer(_Answer):
    """A plan: the tasks a PRD asks for, in order."""

    tasks: list[TaskAnswer] = Field(min_length=1, max_length=MAX_TASKS)


class EnhancementAnswer(_Answer):
    """What a task needs said before work starts."""

    enhancement_type: Literal["acceptance_criteria", "implementation_notes", "clarification"]
    content: str = Field(min_length=1, max_length=_FIELD)


class ShortAnswerTest(_Answer):
    """A question answered in words."""

    question: str = Field(min_length=1, max_length=1000)
    correct_answer: str = Field(min_length=1, max_length=2000)


class MultipleChoiceTest(_Answer):
    """A question with options, exactly one of them right."""

    question: str = Field(min_length=1, max_length=1000)
    options: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        min_length=2, max_length=MAX_TEST_OPTIONS
    )
    correct_answer: str = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _answer_is_an_option(self) -> MultipleChoiceTest:
        if len(set(self.options)) != len(self.options):
            raise ValueError("options must all differ")
        if self.correct_answer not in self.options:
            raise ValueError("correct_answer must be one of the options, word for word")
        return self


class SubtaskAnswer(_Answer):
    """One part of a decomposed task."""

    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)


class DecompositionAnswer(_Answer):
    """A task split into 3 to 5 parts, in the order to do them."""

    subtasks: list[SubtaskAnswer] = Field(min_length=3, max_length=5)


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema Ollama constrains the answer with."""
    return model.model_json_schema()


def strip_wrapping(content: str) -> str:
    """The answer without `<think>…</think>` blocks and without a ```json fence.

    One pass over the answer, whatever it holds: the text between blocks is
    collected and joined once (cutting each block out of the whole text in
    turn took seconds for an answer of 1 MiB and 20,000 blocks).
    """
    kept: list[str] = []
    position = 0
    while (start := content.find(_THINK, position)) >= 0:
        end = content.find(_THOUGHT, start + len(_THINK))
        if end < 0:
            raise AnswerInvalid("the answer has a <think> block that never ends")
        kept.append(content[position:start])
        position = end + len(_THOUGHT)
    kept.append(content[position:])
    text = "".join(kept).strip()
    fenced = _FENCE.search(text) if "```" in text else None
    if fenced:
        text = fenced.group(1).strip()
    return text


def read_answer(content: str, model: type[M]) -> M:
    """Parse and validate a model's reply, or say what is wrong with it."""
    text = strip_wrapping(content)
    if not text:
        raise AnswerInvalid("the answer is empty; expected one JSON object")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnswerInvalid(
            f"the answer is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in error['loc']) or 'the answer'}: {error['msg']}"
            for error in exc.errors()[:3]
        ]
        more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
        raise AnswerInvalid("; ".join(problems) + more) from None
