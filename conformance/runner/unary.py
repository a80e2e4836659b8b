"""The `call` step: one unary call per client, judged against the case and recorded."""

from __future__ import annotations

import time

from rigger.conformance.v1 import harness_pb2 as hp

from conformance import cases as c
from conformance.cases import messages
from conformance.executors.process import ExecutorProcess
from conformance.runner import judge
from conformance.runner.describe import CODE_NAMES, short
from conformance.runner.stage import ANSWER_SLACK_S, Stage
from conformance.runner.steps import Scope, fail, for_each
from conformance.runner.transcript import Record, Transcript


async def call(stage: Stage, transcript: Transcript, step: c.Call, scope: Scope) -> None:
    """A unary call from every client of the step's role, judged and recorded."""
    method = messages.SERVICE.methods_by_name[step.method]
    written = messages.build(method.input_type, scope.bindings.resolve(step.request), "request")
    request = await stage.as_the_run_asks(written)
    metadata = scope.bindings.resolve(dict(step.metadata))
    expect = step.expect
    wanted_response = (
        scope.bindings.resolve(expect.response) if expect.response is not None else None
    )

    async def one(target: tuple[str, str, ExecutorProcess]) -> None:
        instance, language, executor = target
        who = f"{instance}/{language}"
        started = time.monotonic()
        answer = await executor.request(
            step.timeout_ms / 1000 + ANSWER_SLACK_S,
            unary_call=hp.UnaryCall(
                method=step.method,
                request=request.SerializeToString(),
                metadata=metadata,
                timeout_ms=step.timeout_ms,
            ),
        )
        elapsed_ms = (time.monotonic() - started) * 1000
        if answer.WhichOneof("result") != "unary_result":
            fail(step, who, [f"the executor answered {short(answer)}"])
        result = answer.unary_result
        response = None
        problems = judge.match_status(
            expect.code,
            expect.message_contains,
            result.status.code,
            result.status.message,
            CODE_NAMES,
            step.method,
        )
        if result.status.code == 0:
            try:
                response = messages.message_class(method.output_type).FromString(result.response)
            except Exception as exc:
                problems.append(f"the response does not parse: {exc}")
            else:
                response, problem = stage.seen_by_the_run(written, response)
                problems += [problem] * bool(problem)
        elif result.response:
            problems.append("a failed call reported a response body")
        if response is not None and wanted_response is not None:
            problems += judge.match_message(wanted_response, response, "response")
        headers = {h.key: h.value for h in result.headers}
        trailers = {h.key: h.value for h in result.trailers}
        if expect.headers:
            problems += judge.match_headers(
                scope.bindings.resolve(dict(expect.headers)), headers, "headers"
            )
        if expect.trailers:
            problems += judge.match_headers(
                scope.bindings.resolve(dict(expect.trailers)), trailers, "trailers"
            )
        if expect.within_ms is not None and elapsed_ms > expect.within_ms:
            problems.append(f"took {elapsed_ms:.0f} ms, more than {expect.within_ms} ms")
        if step.record:
            transcript.add(
                Record(
                    at=step.where,
                    client=instance.partition("@")[0],
                    kind="unary",
                    code=CODE_NAMES.get(result.status.code, str(result.status.code)),
                    message=result.status.message,
                    transport=instance in stage.refused,
                    response=response,
                    trailers=trailers,
                    unordered=scope.unordered,
                )
            )
        fail(step, who, problems)
        if step.capture and response is not None:
            scope.bindings.bind(step.capture, response)

    await for_each(stage.instances(step.client), one)
