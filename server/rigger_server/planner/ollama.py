"""The Ollama planner: a model run by Ollama answers, through its chat API.

Each step is one `POST /api/chat` with `stream: false`, `format` set to the
JSON Schema of the expected answer (answers.py) and temperature 0. The reply
is read whole: `<think>` blocks and a ```json fence are taken off, and it
must validate. An invalid reply is sent back with what failed, at most
`retries` times; after that the call fails with PlannerOutputInvalid
carrying the first error. Nothing is returned unless the whole answer
validates.

It speaks HTTP through httpx rather than the `ollama` package: the official
client is itself a thin layer over httpx (and pydantic), while the planner
needs exactly what that layer hides: a timeout per call that follows the
caller's deadline, and the raw status and error body to tell "not pulled"
(404) from "not running" (no connection) from "failed" (500).

Errors: no connection → Unavailable naming the URL; a model Ollama does not
have (absent from /api/tags, or 404 from /api/chat) → FailedPrecondition
naming the model and `ollama pull <model>`; Ollama refusing the request
(400) → FailedPrecondition with Ollama's message; Ollama failing (5xx) →
Unavailable with its message; the deadline (the caller's, or `timeout`
seconds) passing → DeadlineExceeded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from rigger_server.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    PlannerOutputInvalid,
    Unavailable,
)
from rigger_server.planner import complexity as heuristic
from rigger_server.planner.answers import (
    AnswerInvalid,
    DecompositionAnswer,
    EnhancementAnswer,
    MultipleChoiceTest,
    ShortAnswerTest,
    TaskListAnswer,
    read_answer,
    schema_of,
)
from rigger_server.planner.config import DEFAULT_MODEL, DEFAULT_RETRIES, DEFAULT_TIMEOUT
from rigger_server.planner.dependencies import DependencyError, check_acyclic
from rigger_server.planner.plans import (
    ComprehensionTest,
    Deadline,
    Decomposition,
    Enhancement,
    PlannedTask,
    Subtask,
    TaskContext,
    TaskPlan,
    check_test_type,
)
from rigger_server.prd import ParsedPrd

NAME = "ollama"
# How much of a PRD goes into a prompt: models have small context windows.
PROMPT_BUDGET = 24_000
M = TypeVar("M", bound=BaseModel)

SYSTEM = (
    "You are the planning assistant of Rigger, a task service for software teams. "
    "Answer with one JSON object that matches the JSON schema you are given, and "
    "nothing else: no prose, no code fences."
)


class OllamaPlanner:
    """Plans with a model served by Ollama at `url`."""

    name = NAME

    def __init__(
        self,
        url: str,
        *,
        default_model: str = DEFAULT_MODEL,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        personas: Sequence[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.default_model = default_model
        self.timeout = timeout
        self.retries = retries
        self.personas = tuple(personas)
        self._client = httpx.AsyncClient(base_url=self.url, transport=transport)
        # Models /api/tags showed; a 404 from /api/chat forgets one again.
        self._pulled: set[str] = set()

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    # --- the planner steps --------------------------------------------------------

    async def generate_tasks(
        self, prd: ParsedPrd, *, model: str = "", deadline: Deadline | None = None
    ) -> TaskPlan:
        """The tasks the model reads in `prd`."""
        personas = f"; choose it from: {', '.join(self.personas)}" if self.personas else ""
        prompt = (
            "Break this product requirements document (PRD) into tasks an engineer can "
            "pick up.\n"
            "- If the PRD lists tasks (explicit_tasks), keep each as a task, in order, with "
            "its assignee, due date and dependencies.\n"
            "- Otherwise make one or more tasks for each objective.\n"
            "- depends_on holds the numbers (1 = first) of tasks in your list to finish "
            "first; never a cycle.\n"
            f"- assignee is null unless the PRD names one{personas}.\n"
            "- due_date is YYYY-MM-DD or null; context_files only paths the PRD names.\n\n"
            f"The PRD:\n{_prd_json(prd)}"
        )
        schema = schema_of(TaskListAnswer)
        if self.personas:
            task_schema = schema["$defs"]["TaskAnswer"]["properties"]
            task_schema["assignee"] = {"anyOf": [{"enum": list(self.personas)}, {"type": "null"}]}
        answer, served = await self._ask(
            model, prompt, TaskListAnswer, schema, self._check_plan, deadline
        )
        tasks = []
        for task in answer.tasks:
            tasks.append(
                PlannedTask(
                    title=task.title,
                    reasoning=task.description,
                    complexity=heuristic.complexity(
                        task.title,
                        assignee=task.assignee,
                        due_date=task.due_date,
                        reasoning=task.description,
                    ),
                    assignee=task.assignee or None,
                    due_date=task.due_date,
                    context_files=tuple(dict.fromkeys(task.context_files)),
                    dependencies=tuple(dict.fromkeys(n - 1 for n in task.depends_on)),
                )
            )
        return TaskPlan(tasks=tuple(tasks), planner=NAME, model=served)

    async def enhance(
        self, context: TaskContext, *, model: str = "", deadline: Deadline | None = None
    ) -> Enhancement:
        """What the model says the task needs before work starts."""
        prompt = (
            "Write an enhancement for this task: what whoever takes it needs to know before "
            "starting. Prefer enhancement_type acceptance_criteria: one goal line, then a "
            "checklist of acceptance criteria drawn from the PRD's constraints and the task's "
            "context, then open questions.\n\n" + _context_json(context)
        )
        answer, served = await self._ask(
            model, prompt, EnhancementAnswer, schema_of(EnhancementAnswer), None, deadline
        )
        return Enhancement(
            enhancement_type=answer.enhancement_type,
            content=answer.content,
            planner=NAME,
            model=served,
        )

    async def comprehension_test(
        self,
        context: TaskContext,
        enhancement: Enhancement | None,
        test_type: str,
        *,
        model: str = "",
        deadline: Deadline | None = None,
    ) -> ComprehensionTest:
        """One question of `test_type` about the task, written by the model."""
        test_type = check_test_type(test_type)
        kind = (
            "multiple-choice question with 3 to 5 options, exactly one right; "
            "correct_answer is that option, word for word"
            if test_type == "multiple_choice"
            else "short-answer question; correct_answer is a model answer in one sentence"
        )
        known = _context_json(context)
        if enhancement is not None:
            known += f"\n\nThe task's enhancement:\n{enhancement.content[: PROMPT_BUDGET // 4]}"
        prompt = (
            f"Write one {kind}, that checks an engineer understood this task before starting "
            "it. Ask about something specific to the task, not general knowledge.\n\n" + known
        )
        answer_type: type[ShortAnswerTest | MultipleChoiceTest] = (
            MultipleChoiceTest if test_type == "multiple_choice" else ShortAnswerTest
        )
        answer, served = await self._ask(
            model, prompt, answer_type, schema_of(answer_type), None, deadline
        )
        options = tuple(answer.options) if isinstance(answer, MultipleChoiceTest) else ()
        return ComprehensionTest(
            test_type=test_type,
            question=answer.question,
            options=options,
            correct_answer=answer.correct_answer,
            planner=NAME,
            model=served,
        )

    async def decompose(
        self, context: TaskContext, *, model: str = "", deadline: Deadline | None = None
    ) -> Decomposition:
        """The task split by the model into 3 to 5 simpler subtasks."""
        task = context.task
        prompt = (
            "Split this task into 3 to 5 subtasks, in the order to do them. Each is a smaller, "
            "concrete piece of work, simpler than the task, with a short title (at most 50 "
            "characters) that does not repeat the task's title.\n\n" + _context_json(context)
        )

        def distinct(answer: DecompositionAnswer) -> None:
            titles = [s.title.lower() for s in answer.subtasks]
            if len(set(titles)) != len(titles):
                raise AnswerInvalid("subtasks: every subtask needs its own title")
            if task.title.lower() in titles:
                raise AnswerInvalid("subtasks: a subtask repeats the task's own title")

        answer, served = await self._ask(
            model, prompt, DecompositionAnswer, schema_of(DecompositionAnswer), distinct, deadline
        )
        ceiling = max(1, heuristic.task_score(task).value - 1)
        subtasks = tuple(
            Subtask(
                title=part.title,
                reasoning=part.description,
                complexity=min(
                    ceiling,
                    heuristic.complexity(
                        part.title,
                        assignee=task.assignee,
                        due_date=task.due_date,
                        reasoning=part.description,
                    ),
                ),
                assignee=task.assignee,
                due_date=task.due_date,
                context_files=task.context_files,
            )
            for part in answer.subtasks
        )
        return Decomposition(subtasks=subtasks, planner=NAME, model=served)

    def _check_plan(self, answer: TaskListAnswer) -> None:
        titles = [task.title for task in answer.tasks]
        try:
            check_acyclic([[n - 1 for n in task.depends_on] for task in answer.tasks], titles)
        except DependencyError as exc:
            raise AnswerInvalid(f"depends_on: {exc}") from None
        if self.personas:
            for number, task in enumerate(answer.tasks, start=1):
                if task.assignee and task.assignee not in self.personas:
                    raise AnswerInvalid(
                        f"tasks.{number - 1}.assignee: {task.assignee!r} is not one of "
                        f"{', '.join(self.personas)}"
                    )

    # --- talking to Ollama --------------------------------------------------------

    async def version(self, deadline: Deadline | None = None) -> str:
        """The Ollama server's version (GET /api/version)."""
        body = await self._get("/api/version", self._deadline(deadline))
        return str(body.get("version", ""))

    def _deadline(self, deadline: Deadline | None) -> Deadline:
        own = Deadline(time.monotonic() + self.timeout)
        return own if deadline is None or deadline.at > own.at else deadline

    async def _ask(
        self,
        model: str,
        prompt: str,
        answer_type: type[M],
        schema: dict[str, Any],
        check: Callable[[M], None] | None,
        deadline: Deadline | None,
    ) -> tuple[M, str]:
        """Ask until an answer validates, at most 1 + retries times."""
        model = model.strip() or self.default_model
        deadline = self._deadline(deadline)
        await self._ensure_pulled(model, deadline)
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        first_error: str | None = None
        attempts = 1 + self.retries
        for _ in range(attempts):
            content, served = await self._chat(model, messages, schema, deadline)
            try:
                answer = read_answer(content, answer_type)
                if check is not None:
                    check(answer)
            except AnswerInvalid as exc:
                first_error = first_error or str(exc)
                messages += [
                    {"role": "assistant", "content": content[:PROMPT_BUDGET]},
                    {
                        "role": "user",
                        "content": f"That answer is invalid: {exc}. Answer again with only "
                        "the JSON object, matching the schema.",
                    },
                ]
                continue
            return answer, served
        raise PlannerOutputInvalid(model, attempts, first_error or "")

    async def _ensure_pulled(self, model: str, deadline: Deadline) -> None:
        if model in self._pulled:
            return
        body = await self._get("/api/tags", deadline)
        names = [
            str(entry.get("name") or entry.get("model") or "")
            for entry in body.get("models", [])
            if isinstance(entry, dict)
        ]
        wanted = model if ":" in model else f"{model}:latest"
        if model in names or wanted in names:
            self._pulled.add(model)
            return
        raise self._not_pulled(model, names)

    def _not_pulled(self, model: str, names: Sequence[str] | None = None) -> FailedPrecondition:
        message = (
            f"model {model!r} is not pulled on the Ollama server at {self.url}: "
            f"run `ollama pull {model}`"
        )
        if names is not None:
            message += f" (it has: {', '.join(names[:10])})" if names else " (it has no models)"
        return FailedPrecondition(message)

    async def _chat(
        self, model: str, messages: list[dict[str, str]], schema: dict[str, Any], deadline: Deadline
    ) -> tuple[str, str]:
        body = {
            "model": model,
            "messages": messages,
            "stream": False,
            "format": schema,
            "options": {"temperature": 0},
        }
        response = await self._request("POST", "/api/chat", deadline, model=model, json=body)
        if response.status_code == 404:
            self._pulled.discard(model)
            raise self._not_pulled(model)
        reply = self._json(response, "/api/chat")
        message = reply.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise Unavailable(
                f"Ollama at {self.url} answered /api/chat without a message: {_clip(reply)}"
            )
        return message["content"], str(reply.get("model") or model)

    async def _get(self, path: str, deadline: Deadline) -> dict[str, Any]:
        return self._json(await self._request("GET", path, deadline), path)

    async def _request(
        self, method: str, path: str, deadline: Deadline, *, model: str = "", **kwargs: Any
    ) -> httpx.Response:
        remaining = deadline.remaining()
        waited_for = f" with model {model!r}" if model else ""
        if remaining <= 0:
            raise DeadlineExceeded(f"the deadline passed before Ollama at {self.url} was asked")
        try:
            # httpx's timeout bounds each read; the asyncio timeout bounds the whole call.
            async with asyncio.timeout(remaining):
                response = await self._client.request(method, path, timeout=remaining, **kwargs)
        except (TimeoutError, httpx.TimeoutException):
            if deadline.remaining() <= 0.05:
                raise DeadlineExceeded(
                    f"Ollama at {self.url} did not answer {path}{waited_for} "
                    f"within the deadline ({remaining:.1f} s)"
                ) from None
            raise Unavailable(f"Ollama is not reachable at {self.url}: timed out") from None
        except httpx.TransportError as exc:
            raise Unavailable(
                f"Ollama is not reachable at {self.url} ({type(exc).__name__}: {exc}); "
                "start it with `ollama serve`, or point --ollama-url or OLLAMA_HOST at it"
            ) from None
        if response.status_code == 400:
            raise FailedPrecondition(
                f"Ollama at {self.url} refused {path}{waited_for}: {_error_of(response)}"
            )
        if response.status_code >= 500 or (
            response.status_code >= 300 and response.status_code != 404
        ):
            raise Unavailable(
                f"Ollama at {self.url} failed on {path}{waited_for} "
                f"(HTTP {response.status_code}): {_error_of(response)}"
            )
        return response

    def _json(self, response: httpx.Response, path: str) -> dict[str, Any]:
        if response.status_code == 404:
            raise Unavailable(f"{self.url} has no {path}: is it an Ollama server?")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Unavailable(
                f"{self.url} answered {path} with something that is not Ollama's JSON: "
                f"{_clip(response.text)}"
            )
        return body


def _clip(value: object, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "\u2026"


def _error_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return _clip(response.text) or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return _clip(body)


def _bounded(entries: Sequence[str], budget: int) -> list[str]:
    """As many entries as fit in `budget` characters, and a note of the rest."""
    shown: list[str] = []
    for entry in entries:
        budget -= len(entry) + 4
        if budget < 0:
            shown.append(f"... and {len(entries) - len(shown)} more")
            break
        shown.append(entry)
    return shown


def _prd_json(prd: ParsedPrd, budget: int = PROMPT_BUDGET) -> str:
    share = budget // 6
    document: dict[str, Any] = {
        "title": prd.title,
        "summary": prd.summary[:share],
        "objectives": _bounded(prd.objectives, share),
        "tech_stack": _bounded(prd.tech_stack, share // 2),
        "constraints": _bounded(prd.constraints, share),
        "paths": _bounded(prd.paths, share // 2),
    }
    if prd.tasks:
        explicit: list[dict[str, object]] = []
        left = share * 2
        for number, task in enumerate(prd.tasks, start=1):
            entry = {
                "number": number,
                "title": task.title,
                "assignee": task.assignee,
                "due_date": task.due_date,
                "after": list(task.after),
                "depends_on_titles": list(task.depends_on),
                "steps": list(task.steps[:10]),
            }
            left -= len(json.dumps(entry))
            if left < 0:
                explicit.append({"note": f"{len(prd.tasks) - number + 1} more tasks left out"})
                break
            explicit.append(entry)
        document["explicit_tasks"] = explicit
    return json.dumps(document, ensure_ascii=False, indent=1)


def _context_json(context: TaskContext) -> str:
    task = context.task
    by_id = {other.id: other for other in context.related}
    known: dict[str, Any] = {
        "task": {
            "title": task.title,
            "description": (task.reasoning or "")[: PROMPT_BUDGET // 4],
            "assignee": task.assignee,
            "due_date": task.due_date,
            "context_files": list(task.context_files),
            "depends_on": [by_id[i].title for i in task.dependencies if i in by_id],
        }
    }
    text = json.dumps(known, ensure_ascii=False, indent=1)
    if context.prd is not None:
        text += "\n\nThe PRD it comes from:\n" + _prd_json(context.prd, PROMPT_BUDGET // 2)
    return text
