"""BaseProcessManager: the class users subclass to describe a process (saga).

A process is a sequence of steps; each step sends one command and waits for its reply.
The manager says what the first step is, which command a step sends, how a reply
changes the state, which step comes next, and which step undoes a completed one. The
:class:`~commandbus.process.router.ProcessReplyRouter` applies replies; this class holds
no I/O besides :meth:`BaseProcessManager.start`.

State and step contract
-----------------------
* ``TStep`` is a ``str`` or a str-valued ``Enum`` (``StrEnum``). Steps are stored by
  value and rebuilt with ``step_type(value)`` (inferred from the class's type arguments,
  or set ``step_type``); override :meth:`step_to_str`/:meth:`step_from_str` otherwise.
* ``TState`` is a dataclass or a ``dict`` of plain JSON types. A dataclass is stored with
  ``dataclasses.asdict`` and rebuilt with ``state_type(**data)`` (inferred from the type
  arguments, or set ``state_type``); nested dataclasses come back as dicts unless you
  override :meth:`state_from_dict`. Whatever :meth:`state_to_dict` returns must be
  JSON-serialisable (convert datetimes, UUIDs and Decimals yourself).
"""

from __future__ import annotations

import dataclasses
import uuid
from abc import ABC, abstractmethod
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin

from psycopg import AsyncConnection

from commandbus import _sql
from commandbus._errors import ConfigurationError, ValidationError
from commandbus._send import PreparedSend
from commandbus._validation import check_name, dump_json_object
from commandbus.bus import CommandBus
from commandbus.models import Reply, SendRequest
from commandbus.process.models import ProcessCommand

__all__ = ["BaseProcessManager", "PlannedCommand"]

TState = TypeVar("TState")
TStep = TypeVar("TStep")


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedCommand:
    """A step's command, ready to send and to record in the process audit."""

    step: str
    request: SendRequest
    data_json: str


class BaseProcessManager(ABC, Generic[TState, TStep]):
    """Describe a process by subclassing; ``BaseProcessManager(bus)`` to use it.

    The bus gives the pool, the schema and the default ``max_attempts`` of the commands
    the process sends. Class attributes: ``process_type`` (unique per reply queue),
    ``domain`` (where the process is listed, and its commands' default domain),
    ``reply_queue`` (where the replies go; a :class:`ProcessReplyRouter` reads it).
    """

    process_type: ClassVar[str]
    domain: ClassVar[str]
    reply_queue: ClassVar[str]
    #: The dataclass the state is rebuilt as; inferred from ``BaseProcessManager[S, T]``.
    state_type: ClassVar[type[Any] | None] = None
    #: The Enum steps are rebuilt as; inferred from ``BaseProcessManager[S, T]``.
    step_type: ClassVar[type[Any] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            origin = get_origin(base)
            if not (isinstance(origin, type) and issubclass(origin, BaseProcessManager)):
                continue
            args = get_args(base)
            if len(args) != 2:
                continue
            state, step = args
            if "state_type" not in cls.__dict__ and _is_dataclass_type(state):
                cls.state_type = state
            if (
                "step_type" not in cls.__dict__
                and isinstance(step, type)
                and issubclass(step, Enum)
            ):
                cls.step_type = step

    def __init__(self, bus: CommandBus) -> None:
        if not isinstance(bus, CommandBus):
            raise ConfigurationError(
                f"{type(self).__name__} needs a CommandBus, got {type(bus).__name__}"
            )
        for attr in ("process_type", "domain", "reply_queue"):
            if not hasattr(type(self), attr):
                raise ConfigurationError(
                    f"{type(self).__name__} must define the class attribute {attr!r}"
                )
            check_name(attr, getattr(self, attr))
        self.bus = bus

    # -- what a process does (implemented by subclasses) ---------------------------

    @abstractmethod
    def create_initial_state(self, data: dict[str, Any]) -> TState:
        """The state of a new process, from the ``data`` given to :meth:`start`."""

    @abstractmethod
    def get_first_step(self, state: TState) -> TStep:
        """The step whose command :meth:`start` sends."""

    @abstractmethod
    def build_command(self, step: TStep, state: TState) -> ProcessCommand:
        """The command that performs ``step`` (also used for compensation steps)."""

    @abstractmethod
    def update_state(self, state: TState, step: TStep, reply: Reply) -> TState:
        """The state after ``reply`` to ``step``'s command (any outcome)."""

    @abstractmethod
    def get_next_step(self, step: TStep, reply: Reply, state: TState) -> TStep | None:
        """The step after ``step`` succeeded; None when the process is complete."""

    def get_compensation_step(self, step: TStep) -> TStep | None:
        """The step that undoes a completed ``step``; None when nothing needs undoing."""
        return None

    # -- serialisation hooks -------------------------------------------------------

    def state_to_dict(self, state: TState) -> dict[str, Any]:
        if dataclasses.is_dataclass(state) and not isinstance(state, type):
            return dataclasses.asdict(state)
        if isinstance(state, dict):
            return state
        raise ValidationError(
            "state",
            f"{type(state).__name__} is neither a dataclass nor a dict; "
            "override state_to_dict/state_from_dict",
        )

    def state_from_dict(self, data: dict[str, Any]) -> TState:
        if self.state_type is not None:
            return cast(TState, self.state_type(**data))
        return cast(TState, data)

    def step_to_str(self, step: TStep) -> str:
        value = step.value if isinstance(step, Enum) else step
        if not isinstance(value, str) or not value:
            raise ValidationError(
                "step", f"{step!r} is not a non-empty str or a str-valued Enum member"
            )
        return value

    def step_from_str(self, value: str) -> TStep:
        if self.step_type is not None:
            return cast(TStep, self.step_type(value))
        return cast(TStep, value)

    # -- running -------------------------------------------------------------------

    async def start(
        self, data: dict[str, Any], *, conn: AsyncConnection | None = None
    ) -> uuid.UUID:
        """Create the process and send its first command, atomically; its id.

        With ``conn`` both happen inside the caller's transaction (outbox pattern).
        """
        process_id, prepared = self.prepare_start(data)
        await self.bus.sender.write(prepared, conn)
        return process_id

    def prepare_start(self, data: dict[str, Any]) -> tuple[uuid.UUID, PreparedSend]:
        """The new process's id, and the send that writes its row and first command (no
        I/O here, so the sync outbox path runs the very same statements)."""
        state = self.create_initial_state(data)
        process_id = uuid.uuid4()
        first = self.plan(self.get_first_step(state), state, process_id)
        params = {
            "process_id": process_id,
            "domain": self.domain,
            "process_type": self.process_type,
            "step": first.step,
            "command_domain": first.request.domain,
            "command_id": first.request.command_id,
            "command_type": first.request.command_type,
            "command_data": first.data_json,
            "state": self.dump_state(state),
        }
        prepared = self.bus.sender.prepare([first.request])
        return process_id, prepared.after(_sql.query("process_start", self.bus.schema), params)

    def plan(self, step: TStep, state: TState, process_id: uuid.UUID) -> PlannedCommand:
        """Build and check ``step``'s command, addressed to come back to this process."""
        command = self.build_command(step, state)
        if not isinstance(command, ProcessCommand):
            raise ValidationError(
                "build_command",
                f"must return a ProcessCommand, got {type(command).__name__}",
            )
        domain = self.domain if command.domain is None else check_name("domain", command.domain)
        data_json = dump_json_object("data", command.data)
        request = SendRequest(
            domain=domain,
            command_type=check_name("command_type", command.command_type),
            command_id=uuid.uuid4(),
            data=command.data,
            correlation_id=process_id,
            reply_to=self.reply_queue,
            max_attempts=command.max_attempts,
        )
        return PlannedCommand(self.step_to_str(step), request, data_json)

    def dump_state(self, state: TState) -> str:
        return dump_json_object("state", self.state_to_dict(state))


def _is_dataclass_type(value: object) -> bool:
    return isinstance(value, type) and dataclasses.is_dataclass(value)
