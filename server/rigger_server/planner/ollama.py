"""The Ollama planner: a model run by Ollama answers, through its chat API.

Each step is one `POST /api/chat` with `stream: false`, `format` set to the
JSON Schema of the expected answer (answers.py) and temperature 0. The reply
is read up to `Limits.max_model_answer_bytes` (`--max-model-answer-bytes`;
beyond it FailedPrecondition at once, nothing more read), and everything
proportional to its size runs on a thread, off the event loop: `<think>`
blocks and a ```json fence are taken off, and it must validate, within the
server's limits too (planner/bounds.py). An invalid reply is sent back with
what failed, at most `retries` times; after that the call fails with
PlannerOutputInvalid carrying the first error. Nothing is returned unless
the whole answer validates.

At most `Limits.max_model_calls` steps wait on Ollama at once, at most half
of them on one model (`--max-model-calls`); a step beyond either is
ResourceExhausted at once, so hung calls neither pile up nor starve the HTTP
client's pool, and a model that hangs leaves the others reachable.

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
seconds) passing → DeadlineExceeded. Messages quote at most 200 characters
of what Ollama said, and /api/tags, /api/version and error bodies are read
up to MAX_OLLAMA_LISTING_BYTES and MAX_OLLAMA_ERROR_BYTES (limits.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from rigger_server.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    PlannerOutputInvalid,
    ResourceExhausted,
    Unavailable,
    quoted,
)
from rigger_server.limits import MAX_OLLAMA_ERROR_BYTES, MAX_OLLAMA_LISTING_BYTES, Limits
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
from rigger_server.planner.bounds import (
    OverLimit,
    bounded_decomposition,
    bounded_enhancement,
    bounded_plan,
    bounded_test,
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
# How much of what Ollama says a message quotes.
QUOTED_REPLY = 200
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

SYSTEM = (
    "You are the planning assistant of Rigger, a task service for software teams. "
    "Answer with one JSON object that matches the JSON schema you are given, and "
    "nothing else: no prose, no code fences."
)


class ModelCalls:
    """The model calls in flight: at most `total`, at most half of them (or 1) to one model.

    Used on the event loop only, so plain counters do.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.per_model = max(1, total // 2)
        self._in_flight = 0
        self._by_model: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, model: str | None) -> Iterator[None]:
        """Count one call to `model` (None: no model) while inside; ResourceExhausted if full."""
        if self._in_flight >= self.total:
            raise ResourceExhausted(
                f"{self._in_flight} model calls are in flight, the server's limit "
                "(rig grpc --max-model-calls); try again when some have finished"
            )
        if model is not None and self._by_model[model] >= self.per_model:
            raise ResourceExhausted(
                f"{self._by_model[model]} calls to model {quoted(model)} are in flight, as many "
                f"as one model may have (half of rig grpc --max-model-calls {self.total}); try "
                "again when some have finished, or use another model"
            )
        self._in_flight += 1
        if model is not None:
            self._by_model[model] += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            if model is not None:
                self._by_model[model] -= 1
                if not self._by_model[model]:
                    del self._by_model[model]


@dataclasses.dataclass(frozen=True, slots=True)
class _Reply:
    """An HTTP answer from Ollama, its body read up to a cap."""

    status_code: int
    reason: str
    body: bytes


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
        limits: Limits | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.default_model = default_model
        self.timeout = timeout
        self.retries = retries
        self.personas = tuple(personas)
        self.limits = limits or Limits()
        self._calls = ModelCalls(self.limits.max_model_calls)
        # As many connections as calls may be in flight: a call never waits
        # for one (httpx's default pool of 100 let hung calls starve the rest).
        pool = httpx.Limits(
            max_connections=self.limits.max_model_calls,
            max_keepalive_connections=min(20, self.limits.max_model_calls),
        )
        self._client = httpx.AsyncClient(base_url=self.url, transport=transport, limits=pool)
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
        return await self._ask(model, prompt, TaskListAnswer, schema, self._plan, deadline)

    def _plan(self, answer: TaskListAnswer, served: str) -> TaskPlan:
        self._check_plan(answer)
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
        plan = TaskPlan(tasks=tuple(tasks), planner=NAME, model=served)
        return bounded_plan(plan, self.limits)

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

        def make(answer: EnhancementAnswer, served: str) -> Enhancement:
            enhancement = Enhancement(
                enhancement_type=answer.enhancement_type,
                content=answer.content,
                planner=NAME,
                model=served,
            )
            return bounded_enhancement(enhancement, self.limits)

        return await self._ask(
            model, prompt, EnhancementAnswer, schema_of(EnhancementAnswer), make, deadline
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

        def make(answer: ShortAnswerTest | MultipleChoiceTest, served: str) -> ComprehensionTest:
            options = tuple(answer.options) if isinstance(answer, MultipleChoiceTest) else ()
            test = ComprehensionTest(
                test_type=test_type,
                question=answer.question,
                options=options,
                correct_answer=answer.correct_answer,
                planner=NAME,
                model=served,
            )
            return bounded_test(test, self.limits)

        return await self._ask(model, prompt, answer_type, schema_of(answer_type), make, deadline)

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

        def make(answer: DecompositionAnswer, served: str) -> Decomposition:
            titles = [s.title.lower() for s in answer.subtasks]
            if len(set(titles)) != len(titles):
                raise AnswerInvalid("subtasks: every subtask needs its own title")
            if task.title.lower() in titles:
                raise AnswerInvalid("subtasks: a subtask repeats the task's own title")
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
                            subtask=True,
                        ),
                    ),
                    assignee=task.assignee,
                    due_date=task.due_date,
                    context_files=task.context_files,
                )
                for part in answer.subtasks
            )
            decomposition = Decomposition(subtasks=subtasks, planner=NAME, model=served)
            return bounded_decomposition(decomposition, self.limits)

        return await self._ask(
            model, prompt, DecompositionAnswer, schema_of(DecompositionAnswer), make, deadline
        )

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
                        f"tasks.{number - 1}.assignee: {quoted(task.assignee)} is not one of "
                        f"{', '.join(self.personas)}"
                    )

    # --- talking to Ollama --------------------------------------------------------

    async def version(self, deadline: Deadline | None = None) -> str:
        """The Ollama server's version (GET /api/version)."""
        with self._calls.hold(None):
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
        make: Callable[[M, str], R],
        deadline: Deadline | None,
    ) -> R:
        """Ask until an answer validates and `make(answer, served_model)` takes it.

        At most 1 + retries times; `make` raises AnswerInvalid (or OverLimit)
        for an answer to send back. Reading and making run on a thread: their
        work grows with the answer.
        """
        model = model.strip() or self.default_model
        deadline = self._deadline(deadline)
        with self._calls.hold(model):
            await self._ensure_pulled(model, deadline)
            messages = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": prompt},
            ]
            first_error: str | None = None
            attempts = 1 + self.retries
            for _ in range(attempts):
                content, served = await self._chat(model, messages, schema, deadline)
                try:
                    return await asyncio.to_thread(_take, content, answer_type, make, served)
                except AnswerInvalid as exc:
                    first_error = first_error or str(exc)
                    messages += [
                        {"role": "assistant", "content": content[:PROMPT_BUDGET]},
                        {
                            "role": "user",
                            "content": f"That answer is invalid: {exc}. Answer again with "
                            "only the JSON object, matching the schema.",
                        },
                    ]
            raise PlannerOutputInvalid(model, attempts, first_error or "")

    async def models(self, deadline: Deadline) -> list[str]:
        """The names of the models Ollama has pulled (GET /api/tags)."""
        body = await self._get("/api/tags", deadline)
        models = body.get("models", [])
        return [
            str(entry.get("name") or entry.get("model") or "")
            for entry in (models if isinstance(models, list) else [])
            if isinstance(entry, dict)
        ]

    def check_pulled(self, model: str, names: Sequence[str]) -> None:
        """FailedPrecondition naming `ollama pull` unless `names` holds `model`."""
        wanted = model if ":" in model else f"{model}:latest"
        if model not in names and wanted not in names:
            raise self._not_pulled(model, names)

    async def _ensure_pulled(self, model: str, deadline: Deadline) -> None:
        if model in self._pulled:
            return
        self.check_pulled(model, await self.models(deadline))
        self._pulled.add(model)

    def _not_pulled(self, model: str, names: Sequence[str] | None = None) -> FailedPrecondition:
        message = (
            f"model {quoted(model)} is not pulled on the Ollama server at {self.url}: "
            f"run `ollama pull {_clip(model)}`"
        )
        if names is not None:
            listed = ", ".join(_clip(name, 60) for name in names[:10])
            message += f" (it has: {listed})" if names else " (it has no models)"
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
        cap = self.limits.max_model_answer_bytes
        reply = await self._request("POST", "/api/chat", deadline, cap, model=model, json=body)
        if reply.status_code == 404:
            self._pulled.discard(model)
            raise self._not_pulled(model)
        # Parsing grows with the answer: off the event loop.
        return await asyncio.to_thread(self._message_of, reply, model)

    def _message_of(self, reply: _Reply, model: str) -> tuple[str, str]:
        """The assistant's content and the model that served it, from a /api/chat reply."""
        answer = self._json(reply, "/api/chat")
        message = answer.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise Unavailable(
                f"Ollama at {self.url} answered /api/chat without a message: {_clip(answer)}"
            )
        served = str(answer.get("model") or model)
        if len(served) > self.limits.max_field_chars:
            raise Unavailable(
                f"Ollama at {self.url} answered /api/chat naming a model of {len(served)} "
                f"characters, {quoted(served)}; the limit is {self.limits.max_field_chars}"
            )
        return message["content"], served

    async def _get(self, path: str, deadline: Deadline) -> dict[str, Any]:
        reply = await self._request("GET", path, deadline, MAX_OLLAMA_LISTING_BYTES)
        return await asyncio.to_thread(self._json, reply, path)

    async def _request(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        cap: int,
        *,
        model: str = "",
        **kwargs: Any,
    ) -> _Reply:
        """One HTTP call; its body read up to `cap` bytes (FailedPrecondition beyond)."""
        remaining = deadline.remaining()
        waited_for = f" with model {quoted(model)}" if model else ""
        if remaining <= 0:
            raise DeadlineExceeded(f"the deadline passed before Ollama at {self.url} was asked")
        try:
            # httpx's timeout bounds each read; the asyncio timeout bounds the whole call.
            async with (
                asyncio.timeout(remaining),
                self._client.stream(method, path, timeout=remaining, **kwargs) as response,
            ):
                failed = response.status_code >= 300
                body = await self._read(
                    response, path, MAX_OLLAMA_ERROR_BYTES if failed else cap, cut=failed
                )
        except (TimeoutError, httpx.TimeoutException):
            if deadline.remaining() <= 0.05:
                raise DeadlineExceeded(
                    f"Ollama at {self.url} did not answer {path}{waited_for} "
                    f"within the deadline ({remaining:.1f} s)"
                ) from None
            raise Unavailable(f"Ollama is not reachable at {self.url}: timed out") from None
        except httpx.RequestError as exc:
            raise Unavailable(
                f"Ollama is not reachable at {self.url} ({type(exc).__name__}: "
                f"{_clip(str(exc))}); start it with `ollama serve`, or point --ollama-url or "
                "OLLAMA_HOST at it"
            ) from None
        reply = _Reply(response.status_code, response.reason_phrase, body)
        if reply.status_code == 400:
            raise FailedPrecondition(
                f"Ollama at {self.url} refused {path}{waited_for}: {_error_of(reply)}"
            )
        if reply.status_code >= 500 or (reply.status_code >= 300 and reply.status_code != 404):
            raise Unavailable(
                f"Ollama at {self.url} failed on {path}{waited_for} "
                f"(HTTP {reply.status_code}): {_error_of(reply)}"
            )
        return reply

    async def _read(self, response: httpx.Response, path: str, cap: int, *, cut: bool) -> bytes:
        """The body, as decoded, up to `cap` bytes: cut there, or FailedPrecondition.

        Reading stops at the cap whatever the headers say: a model answering
        256 MiB must not make the server hold it.
        """
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > cap:
                if cut:
                    return bytes(body[:cap])
                flag = " (rig grpc --max-model-answer-bytes)" if path == "/api/chat" else ""
                raise FailedPrecondition(
                    f"Ollama at {self.url} answered {path} with more than {cap} bytes, the "
                    f"most the server reads{flag}; nothing was written"
                )
        return bytes(body)

    def _json(self, reply: _Reply, path: str) -> dict[str, Any]:
        if reply.status_code == 404:
            raise Unavailable(f"{self.url} has no {path}: is it an Ollama server?")
        try:
            body = json.loads(reply.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Unavailable(
                f"{self.url} answered {path} with something that is not Ollama's JSON: "
                f"{_clip(reply.body.decode('utf-8', 'replace'))}"
            )
        return body


def _take(content: str, answer_type: type[M], make: Callable[[M, str], R], served: str) -> R:
    """Read a model's reply and make the result of it; AnswerInvalid for what to send back."""
    try:
        return make(read_answer(content, answer_type), served)
    except OverLimit as exc:
        raise AnswerInvalid(str(exc)) from None


def _clip(value: object, limit: int = QUOTED_REPLY) -> str:
    """At most `limit` characters of what Ollama said (a JSON value as JSON)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "\u2026"


def _error_of(reply: _Reply) -> str:
    try:
        body = json.loads(reply.body)
    except ValueError:
        return _clip(reply.body.decode("utf-8", "replace")) or reply.reason
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return _clip(str(body["error"]))
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
