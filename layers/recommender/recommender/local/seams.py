"""Every place the local engine reaches into moto's internals, in one module.

moto is pinned (pyproject.toml, `PINNED_MOTO`) because of what is here; check each seam again when
the pin moves. `../shared/notes/local-engine.md` says what moto's Step Functions engine does and
does not do; these seams close the gaps that would hide a bug AWS would show.

1. Lambda invocations. `moto.awslambda_simple.models.LambdaSimpleBackend.invoke(self,
   function_name, qualifier, body, headers, response_headers)` only echoes its input. The engine
   replaces it with its own dispatch (`engine._invoke`): the handler runs in this process or in a
   Lambda-shaped sandbox, and an exception comes back as Lambda reports it
   (`x-amz-function-error: Unhandled`, `{errorType, errorMessage, stackTrace}`), so Retry and
   Catch match the exception's class name. Step Functions tasks and our own `lambda.invoke`
   calls both go through it.
2. Terminal errors. moto's `ErrorEqualsDecl._eval_body` lets `States.ALL` match every error. On
   AWS it matches neither `States.DataLimitExceeded` nor `States.Runtime`: a Catch or Retry of
   `States.ALL` does not see them and the execution fails. The patch keeps them for retriers and
   catchers that name them.
3. The state payload limit. moto checks a state's output and a task's result against
   `moto.stepfunctions.parser.quotas.MAX_STATE_SIZE_UTF8_BYTES`; the engine sets it to its own
   limit (256 KiB, as AWS), so that a test may lower it.
4. What a Map collects. moto does not check the array a Map state collects from its iterations
   before ResultSelector and ResultPath, and AWS does (a DISTRIBUTED Map without ResultWriter
   fails with `States.DataLimitExceeded` even with `ResultPath: null`). `StateMap._eval_execution`
   is wrapped to check it.
5. A task's input after Parameters. AWS fails a state whose effective input (after Parameters) is
   over the limit; moto does not check it. For `lambda:invoke` tasks that input is the Payload,
   checked in `lambda_eval_utils.execute_lambda_function_integration`.

6. The execution history. AWS keeps at most 25,000 events per execution: when event number 25,000
   is not ExecutionSucceeded, the execution fails. moto keeps any number.
   `EventManager.add_event` is wrapped to refuse the event that would reach the limit: the
   exception ends the execution with States.Runtime, and its terminal event is still written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from unittest import mock

from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.stepfunctions.parser import quotas
from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

PINNED_MOTO = "5.2.5"

# Errors States.ALL does not match on AWS (the error handling guide, "States.ALL").
_TERMINAL = (StatesErrorNameType.StatesStatesDataLimitExceeded, StatesErrorNameType.StatesRuntime)

Dispatch = Callable[[LambdaSimpleBackend, str, "str | None", Any, Any, dict[str, str]], bytes]


def payload_size(value: Any) -> int:
    """The size Step Functions counts: the value as UTF-8 JSON text."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return len(text.encode("utf-8"))


def data_limit_exceeded(env: Environment, cause: str) -> FailureEventException:
    error = StatesErrorNameType.StatesStatesDataLimitExceeded
    return FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=error),
            event_type=HistoryEventType.TaskFailed,
            event_details=EventDetails(  # type: ignore[typeddict-item]  # moto's own construct
                executionFailedEventDetails=ExecutionFailedEventDetails(error=error.to_name(), cause=cause)
            ),
        )
    )


def _error_equals(original: Callable[[ErrorEqualsDecl, Environment], None]) -> Callable[..., None]:
    def error_equals(self: ErrorEqualsDecl, env: Environment) -> None:
        error_name = env.stack[-1]
        if (
            isinstance(error_name, StatesErrorName)
            and error_name.typ in _TERMINAL
            and ErrorEqualsDecl._STATE_ALL_ERROR in self.error_names
        ):
            env.stack.pop()
            env.stack.append(False)  # States.ALL must stand alone, so nothing else here names it
            return
        original(self, env)

    return error_equals


def _map_execution(
    original: Callable[[StateMap, Environment], None], limit: Callable[[], int]
) -> Callable[..., None]:
    def eval_execution(self: StateMap, env: Environment) -> None:
        original(self, env)
        if env.stack:
            size = payload_size(env.stack[-1])
            if size > limit():
                raise data_limit_exceeded(
                    env,
                    f"The state '{self.name}' collected {size:,} bytes from its iterations, more than"
                    f" the {limit():,}-byte payload limit (ResultPath does not lift it).",
                )

    return eval_execution


def _lambda_integration(original: Callable[..., None], limit: Callable[[], int]) -> Callable[..., None]:
    def execute(env: Environment, parameters: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        payload = parameters.get("Payload")
        size = len(payload) if isinstance(payload, bytes) else payload_size(payload or {})
        if size > limit():
            raise data_limit_exceeded(
                env,
                f"The input of the task invoking {parameters.get('FunctionName')} is {size:,} bytes"
                f" after Parameters, more than the {limit():,}-byte payload limit.",
            )
        original(env, parameters, *args, **kwargs)

    return execute


class HistoryLimitReached(RuntimeError):
    """An execution's history would pass the limit; moto ends the execution with States.Runtime."""


_ENDINGS = {
    HistoryEventType.ExecutionSucceeded,
    HistoryEventType.ExecutionFailed,
    HistoryEventType.ExecutionAborted,
    HistoryEventType.ExecutionTimedOut,
}


def _add_event(original: Callable[..., int], limit: Callable[[], int]) -> Callable[..., int]:
    def add_event(
        self: EventManager, context: Any, event_type: HistoryEventType, *args: Any, **kwargs: Any
    ) -> int:
        if event_type not in _ENDINGS and len(self._history_event_list) >= limit() - 1:
            raise HistoryLimitReached(
                f"The execution reached the maximum number of history events ({limit()})."
            )
        return original(self, context, event_type, *args, **kwargs)

    return add_event


def patches(
    dispatch: Dispatch, state_payload_limit: Callable[[], int], history_limit: Callable[[], int]
) -> list[Any]:
    """The patches, not started: the engine starts them on entry and stops them on exit."""
    return [
        mock.patch.object(EventManager, "add_event", _add_event(EventManager.add_event, history_limit)),
        mock.patch.object(LambdaSimpleBackend, "invoke", dispatch),
        mock.patch.object(ErrorEqualsDecl, "_eval_body", _error_equals(ErrorEqualsDecl._eval_body)),
        mock.patch.object(quotas, "MAX_STATE_SIZE_UTF8_BYTES", state_payload_limit()),
        mock.patch.object(
            StateMap, "_eval_execution", _map_execution(StateMap._eval_execution, state_payload_limit)
        ),
        mock.patch.object(
            lambda_eval_utils,
            "execute_lambda_function_integration",
            _lambda_integration(lambda_eval_utils.execute_lambda_function_integration, state_payload_limit),
        ),
    ]
