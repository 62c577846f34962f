"""QueueHandler: what goes on the queue, and what the caller pays for."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import decimal
import enum
import fractions
import functools
import ipaddress
import json
import logging
import pathlib
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from support import STALL, Recorder

import aioqlog
from aioqlog._handler import ITEMWISE, Snapshot, snapshot


def _make(msg: Any, *args: Any) -> logging.LogRecord:
    logger = logging.getLogger("aioqlog.tests.handler")
    return logger.makeRecord(logger.name, logging.INFO, __file__, 10, msg, args, None)


def test_immutable_arguments_go_as_they_are() -> None:
    """The common case costs no copy: the record itself goes on the queue, unformatted."""
    record = _make("user %s did %d things at %.1f", "ann", 3, 1.5)
    assert snapshot(record) is record
    assert record.args == ("ann", 3, 1.5)


def test_a_mutable_argument_prints_as_it_was_at_the_call() -> None:
    """A list mutated after the call still prints its call-time state."""
    items = [1, 2]
    record = _make("items %s and %r", items, items)
    prepared = snapshot(record)
    items.append(3)
    assert prepared.getMessage() == "items [1, 2] and [1, 2]"


def test_the_template_and_arguments_stay_for_error_trackers() -> None:
    """Msg stays the template; args stay arguments: containers copied, objects as snapshots."""
    items = [1, 2]
    when = {"at": [9]}
    thing = _Thing()
    record = _make("items %s at %s for %s by %s", items, when, "ann", thing)
    prepared = snapshot(record)
    assert prepared.msg == "items %s at %s for %s by %s"
    assert isinstance(prepared.args, tuple)
    copied, mapping, name, snapped = prepared.args
    assert type(copied) is list
    assert copied == items
    assert copied is not items
    assert type(mapping) is dict
    assert mapping == when
    assert mapping["at"] is not when["at"]
    assert name == "ann"
    assert isinstance(snapped, Snapshot)


class _Thing:
    """An object of the application's, with state of its own."""

    def __init__(self) -> None:
        self.kwargs = {"user": "ann"}
        self.strs = self.reprs = 0

    def __str__(self) -> str:
        self.strs += 1
        return f"thing of {self.kwargs['user']}"

    def __repr__(self) -> str:
        self.reprs += 1
        return f"<Thing {self.kwargs['user']}>"


def test_a_filter_that_masks_a_dict_argument_masks_it_in_the_message() -> None:
    """A dict argument arrives as a dict (a copy): a redaction filter's change shows."""
    credentials = {"name": "bob", "password": "hunter2"}
    record = _make("login %s from %s", credentials, ["10.0.0.1"])
    prepared = snapshot(record)
    assert isinstance(prepared.args, tuple)
    copied = prepared.args[0]
    assert isinstance(copied, dict)
    copied["password"] = "***"
    assert prepared.getMessage() == "login {'name': 'bob', 'password': '***'} from ['10.0.0.1']"
    assert credentials["password"] == "hunter2"  # the caller's own dict is untouched


def test_container_arguments_serialise_as_json() -> None:
    """A JSON formatter that dumps ``record.args`` finds lists and dicts, not snapshots."""
    import json

    record = _make("cart %s of %s", ["a", {"n": 1}], {"user": "ann"})
    prepared = snapshot(record)
    assert json.dumps(prepared.args) == '[["a", {"n": 1}], {"user": "ann"}]'


def test_an_object_in_a_container_prints_as_it_was_at_the_call() -> None:
    """Inside a copied list, an object of the application's is kept as its repr at the call."""
    thing = _Thing()
    record = _make("things %s", [thing])
    prepared = snapshot(record)
    thing.kwargs["user"] = "bob"
    assert prepared.getMessage() == "things [<Thing ann>]"
    assert json.dumps(prepared.args, default=str) == '[["thing of ann"]]'  # str() at the call


def test_a_snapshot_reads_the_objects_attributes() -> None:
    """A message object (the cookbook's StructuredMessage) keeps its text and its attributes."""
    thing = _Thing()
    record = _make(thing)
    prepared = snapshot(record)
    thing.kwargs["user"] = "bob"
    assert prepared.getMessage() == "thing of ann"
    msg: Any = prepared.msg
    assert msg.kwargs == {"user": "bob"}  # read from the object, as it is now


@pytest.mark.parametrize("template", ["%s", "%r", "%-20r", "%a", "%(x)r", "%(x)s"])
def test_an_object_argument_prints_later_as_at_the_call(template: str) -> None:
    """An object's str() and repr() are both taken at the call.

    The message, and what an error tracker reads of the argument later, are
    as they were then.
    """
    thing = _Thing()
    record = _make(template, {"x": thing}) if "(x)" in template else _make(template, thing)
    expected = record.getMessage()
    prepared = snapshot(record)
    thing.kwargs["user"] = "bob"
    assert prepared.getMessage() == expected
    args = prepared.args
    frozen = args["x"] if isinstance(args, dict) else args[0]  # type: ignore[index]
    assert (str(frozen), repr(frozen)) == ("thing of ann", "<Thing ann>")


def test_a_level_that_cannot_be_read_leaves_the_record_frozen() -> None:
    """The call's level check never raises: a handler whose level fails means "maybe taken"."""

    class Unreadable(logging.NullHandler):
        @property
        def level(self) -> int:
            raise LookupError("no level")

        @level.setter
        def level(self, value: int) -> None:
            pass

    q = aioqlog.LogQueue()
    aioqlog.QueueListener(q, Unreadable())
    items = [1]
    record = _make("items %s", items)
    prepared = snapshot(record, q)
    items.append(2)
    assert prepared.getMessage() == "items [1]"


def test_a_snapshot_pickles_and_copies_as_what_it_printed() -> None:
    """A handler that pickles records (to ship them) gets the text; the object need not pickle."""
    import copy
    import pickle

    thing = _Thing()
    thing.kwargs["lock"] = threading.Lock()  # type: ignore[assignment]
    record = _make("%s %r", thing, thing)
    prepared = snapshot(record)
    thing.kwargs["user"] = "bob"
    for clone in (pickle.loads(pickle.dumps(prepared)), copy.deepcopy(prepared)):
        assert clone.getMessage() == "thing of ann <Thing ann>"


class _Status(enum.IntEnum):
    OK = 200


@pytest.mark.parametrize(
    ("template", "value"),
    [
        ("status %d", _Status.OK),
        ("amount %.2f", decimal.Decimal("9.5")),
        ("ratio %s", fractions.Fraction(1, 3)),
        ("id %s", uuid.UUID(int=7)),
        ("from %s", ipaddress.ip_address("10.0.0.1")),
        ("path %s", pathlib.PurePosixPath("/tmp/x")),
    ],
)
def test_values_that_never_change_go_as_they_are(template: str, value: object) -> None:
    """An enum member, a Decimal, a UUID...: kept, so a filter still finds template and args.

    (``%d`` of an ``IntEnum`` once rendered the message at the call, and a
    redaction filter then found no arguments to mask.)
    """
    record = _make(template + " key=%s", value, "sk-SECRET")
    prepared = snapshot(record)
    assert prepared.msg == template + " key=%s"
    assert prepared.args == (value, "sk-SECRET")
    assert prepared.args[0] is value


@pytest.mark.parametrize(
    "mapping",
    [
        collections.OrderedDict(user="bob", password="hunter2", roles=["a"]),
        collections.defaultdict(list, user="bob", password="hunter2", roles=["a"]),
    ],
    ids=["OrderedDict", "defaultdict"],
)
def test_a_standard_mapping_argument_stays_a_mapping_of_its_class(mapping: Any) -> None:
    """A filter can mask a value of an OrderedDict or defaultdict argument: it is a copy of it."""
    record = _make("login %(user)s %(password)s %(roles)s", mapping)
    prepared = snapshot(record)
    args: Any = prepared.args
    assert type(args) is type(mapping)
    mapping["roles"].append("b")
    args["password"] = "***"
    assert prepared.getMessage() == "login bob *** ['a']"
    assert mapping["password"] == "hunter2"


@pytest.mark.parametrize(
    "make",
    [
        lambda thing: {thing: 1},
        lambda thing: {("at", thing): 1},
        lambda thing: {frozenset({thing}): 1},
        lambda thing: collections.OrderedDict({thing: 1}),
        lambda thing: collections.Counter({thing: 2}),
        lambda thing: collections.defaultdict(list, {thing: [1]}),
        lambda thing: [{"nested": {thing: 1}}],
    ],
    ids=["dict", "tuple key", "frozenset key", "OrderedDict", "Counter", "defaultdict", "nested"],
)
def test_a_mapping_keyed_by_an_object_prints_its_keys_as_at_the_call(
    make: Callable[[_Thing], Any],
) -> None:
    """A key is frozen like a value: an object used as a key that changes later prints as it was."""
    thing = _Thing()
    for template in ("%s", "%r"):
        record = _make(template, make(thing))
        expected = record.getMessage()
        prepared = snapshot(record)
        thing.kwargs["user"] = "bob"
        assert prepared.getMessage() == expected
        thing.kwargs["user"] = "ann"


class _Redact(logging.Filter):
    """The filter a user writes to mask a password in a dict argument."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict) and "password" in record.args:
            record.args["password"] = "***"
        return True


@pytest.mark.parametrize(
    "extra",
    [
        {_Thing(): 1},
        {("at", _Thing()): 1},
        {f"k{i}": _Thing() for i in range(ITEMWISE + 1)},
    ],
    ids=["object key", "tuple key", "many objects"],
)
def test_a_redaction_filter_masks_a_dict_argument_whatever_else_it_holds(
    extra: dict[Any, Any],
) -> None:
    """A dict with keys of one's own, or many objects, stays a dict: the filter's mask shows."""
    credentials = {"user": "bob", "password": "hunter2", **extra}
    record = _make("login %s", credentials)
    expected = _make("login %s", {**credentials, "password": "***"}).getMessage()
    prepared = snapshot(record)
    assert type(prepared.args) is dict
    assert _Redact().filter(prepared)
    assert prepared.getMessage() == expected
    assert credentials["password"] == "hunter2"


class _Factory:
    """A defaultdict factory of one's own, whose repr changes."""

    def __init__(self) -> None:
        self.tag = "list"

    def __call__(self) -> list[Any]:
        return []

    def __repr__(self) -> str:
        return f"Factory<{self.tag}>"


@pytest.mark.parametrize(
    "make", [_Factory, lambda: functools.partial(list, ())], ids=["own", "partial"]
)
def test_a_defaultdict_prints_its_factory_as_at_the_call(make: Callable[[], Any]) -> None:
    """The factory shows in a defaultdict's repr: printed as at the call, still a defaultdict."""
    factory = make()
    credentials = collections.defaultdict(factory, {"user": "bob", "password": "hunter2"})
    record = _make("%s and %s", credentials, [1])
    expected = record.getMessage().replace("hunter2", "***")
    prepared = snapshot(record)
    if isinstance(factory, _Factory):
        factory.tag = "changed"
    copied = prepared.args[0]  # type: ignore[index]
    assert type(copied) is collections.defaultdict
    assert copied["missing"] == []  # the factory still makes the defaults
    del copied["missing"]
    copied["password"] = "***"  # a redaction filter's mask shows
    assert prepared.getMessage() == expected


def test_a_mapping_keyed_by_values_stays_a_mapping() -> None:
    """Keys that are builtin values, tuples of them or enum members keep the copy a dict."""
    args = {"a": [1], (1, "b"): 2, frozenset({3}): 3, _Status.OK: 4}
    prepared = snapshot(_make("%s and %s", args, [2]))
    copied = prepared.args[0]  # type: ignore[index]
    assert type(copied) is dict
    assert copied == args
    assert copied is not args


class _Shade(enum.Enum):
    """An enum whose members print the application's state, not only their names."""

    RED = 1

    def __str__(self) -> str:
        return f"red at {_SHADE_LEVEL[0]}"


_SHADE_LEVEL = [0]


class _Holder(enum.Enum):
    """An enum whose member's value can change (its repr shows it)."""

    BOX = [1]  # noqa: RUF012 - the point of the test


@pytest.mark.parametrize(("template", "member"), [("%s", _Shade.RED), ("%r", _Holder.BOX)])
def test_an_enum_member_that_can_print_differently_later_prints_as_at_the_call(
    template: str, member: enum.Enum
) -> None:
    """Only enums that print as the enum module does, with immutable values, go as they are."""
    record = _make(template, member)
    expected = record.getMessage()
    prepared = snapshot(record)
    _SHADE_LEVEL[0] = 9
    _Holder.BOX.value.append(2)
    try:
        assert prepared.getMessage() == expected
    finally:
        _SHADE_LEVEL[0] = 0
        del _Holder.BOX.value[1:]


def _tuple_in_a_list_in_it() -> tuple[Any, ...]:
    inner: list[Any] = []
    value = (inner,)
    inner.append(value)
    return value


def _tuple_in_a_dict_in_it() -> tuple[Any, ...]:
    inner: dict[str, Any] = {}
    value = (inner,)
    inner["k"] = value
    return value


@pytest.mark.parametrize("make", [_tuple_in_a_list_in_it, _tuple_in_a_dict_in_it])
def test_a_cycle_through_a_tuple_prints_as_it_would(make: Callable[[], tuple[Any, ...]]) -> None:
    """The tuple is copied once: the cycle prints as "(...)", as the argument itself does."""
    record = _make("cycle %s", make())
    expected = record.getMessage()
    assert snapshot(record).getMessage() == expected


def test_a_long_container_of_objects_is_a_snapshot_taken_in_one_call() -> None:
    """Past ``ITEMWISE`` items that are not builtin values, a container prints as at the call.

    Copied item by item, a list of many objects of the application's own
    would cost the call several times what formatting it costs; its repr()
    is taken in one call instead.
    """
    things = [_Thing() for _ in range(ITEMWISE + 1)]
    record = _make("things %s", things)
    expected = record.getMessage()
    prepared = snapshot(record)
    things[0].kwargs["user"] = "bob"
    things.append(_Thing())
    assert prepared.getMessage() == expected
    assert sum(t.reprs for t in things) == ITEMWISE + 1 + ITEMWISE + 1  # the call's, and ours
    few = [_Thing() for _ in range(ITEMWISE)]
    assert type(snapshot(_make("things %s", few)).args[0]) is list  # type: ignore[index]


def test_an_argument_whose_repr_raises_keeps_its_place() -> None:
    """What cannot print now fails where it is printed, as attached directly; the rest stays."""

    class BadRepr:
        def __str__(self) -> str:
            return "printable"

        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    bad = BadRepr()
    prepared = snapshot(_make("%s and %s", bad, [1]))
    assert prepared.getMessage() == "printable and [1]"
    assert prepared.msg == "%s and %s"
    with pytest.raises(RuntimeError, match="no repr"):
        snapshot(_make("%r", bad)).getMessage()


def test_a_set_argument_prints_as_it_was_at_the_call() -> None:
    """A set is not copied (a copy may iterate in another order): it is a snapshot."""
    tags = {"a", "b"}
    record = _make("tags %s", tags)
    expected = record.getMessage()
    prepared = snapshot(record)
    tags.add("c")
    assert prepared.getMessage() == expected


def test_a_record_no_handler_takes_is_not_frozen(logger: logging.Logger) -> None:
    """Behind a listener whose handlers are all above the record's level, nothing is computed.

    The stdlib skips the formatting of such a record; so does the call.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    recorder = Recorder(level=logging.WARNING)
    aioqlog.QueueListener(q, recorder)
    thing = _Thing()
    try:
        logger.info("quiet %s", thing)
        assert (thing.strs, thing.reprs) == (0, 0)
        logger.warning("loud %s", thing)
        assert (thing.strs, thing.reprs) == (1, 1)
        assert recorder.messages() == ["loud thing of ann"]
    finally:
        logger.removeHandler(logger.handlers[-1])


@pytest.mark.parametrize(
    ("msg", "args"),
    [
        ("plain", ()),
        ("%s %d %r %s", ("a", 1, 2.5, None)),
        ("%s", (b"x",)),
        ("%s", ([1],)),
        ("%s %s", ("a", {"k": 1})),
        ("%s", (_Status.OK,)),
        ("%s", (_Thing(),)),
        ("%(k)s", {"k": "v"}),
        ("%(k)s", {"k": [1]}),
        (7, ()),
        (_Thing(), ()),
        ({"event": "e"}, ()),
    ],
)
def test_the_handlers_inline_check_agrees_with_snapshot(msg: object, args: Any) -> None:
    """``handle`` checks the arguments inline: it queues the record itself when snapshot would."""
    q = aioqlog.LogQueue()
    handler = aioqlog.QueueHandler(q)
    record = _make(msg, args) if isinstance(args, dict) else _make(msg, *args)
    handler.handle(record)
    [(queued, _)] = q._peek()
    q._take(1)
    assert (queued is record) == (snapshot(record, q) is record)


def test_the_callers_record_is_never_modified() -> None:
    """Other handlers of the same logger still see the record the logger made."""
    items = [1]
    record = _make("items %s", items)
    snapshot(record)
    assert record.args == (items,)
    assert record.args[0] is items


def test_mapping_arguments_are_frozen_too() -> None:
    """A single dict argument (for %(name)s) keeps its keys; values print as at the call."""
    state = {"n": [1]}
    record = _make("n=%(n)s", state)
    prepared = snapshot(record)
    state["n"].append(2)
    assert prepared.getMessage() == "n=[1]"


class _Secrets(dict):  # type: ignore[type-arg]
    """A mapping whose repr hides its values."""

    def __repr__(self) -> str:
        return f"Secrets(<{len(self)} keys>)"


@pytest.mark.parametrize(
    "mapping",
    [
        collections.OrderedDict(a=[1]),
        collections.Counter(a=1),
        collections.defaultdict(list, a=[1]),
        _Secrets(password="hunter2"),
    ],
    ids=["OrderedDict", "Counter", "defaultdict", "own repr"],
)
def test_a_mapping_argument_prints_as_its_own_class(mapping: dict[str, Any]) -> None:
    """Through "%s", a dict subclass prints as itself (its repr), as when handled at once."""
    record = _make("config: %s", mapping)
    expected = record.getMessage()
    assert expected != f"config: {dict(mapping)}" or type(mapping) is dict
    assert snapshot(record).getMessage() == expected


class _Counter:
    """A mutable number: %d reads it, str() would not be what %d prints."""

    def __init__(self) -> None:
        self.value = 7

    def __index__(self) -> int:
        return self.value


def test_numeric_conversions_of_mutable_objects_render_at_the_call() -> None:
    """%d of a mutable object cannot be a snapshot: the message is rendered right away."""
    counter = _Counter()
    record = _make("count=%d", counter)
    prepared = snapshot(record)
    counter.value = 99
    assert prepared.getMessage() == "count=7"
    assert prepared.args is None


@pytest.mark.parametrize("args", [("not a number", []), ([1],), (_Counter(), _Counter())])
def test_broken_formatting_is_left_for_the_handler_to_report(args: tuple[Any, ...]) -> None:
    """A %-format mismatch is not hidden: the record formats later as it fails now.

    The handler's formatter then fails as it would have, and reports it.
    """
    record = _make("%d items", *args)
    with pytest.raises(TypeError) as now:
        record.getMessage()
    with pytest.raises(TypeError) as later:
        snapshot(record).getMessage()
    assert str(later.value) == str(now.value)


def test_a_dict_message_stays_a_dict() -> None:
    """Structured (dict) messages stay dicts for JSON formatters, copied at the call."""
    payload = {"event": "login", "user": "ann"}
    prepared = snapshot(_make(payload))
    payload["user"] = "bob"
    assert type(prepared.msg) is dict
    assert prepared.msg == {"event": "login", "user": "ann"}


def test_a_dict_message_is_copied_all_the_way_down() -> None:
    """Lists and dicts inside a dict message (a structlog event) keep their call-time state."""
    payload: dict[str, Any] = {"event": "cart", "items": ["a"], "user": {"name": "ann"}}
    prepared = snapshot(_make(payload))
    payload["items"].append("b")
    payload["user"]["name"] = "bob"
    assert prepared.msg == {"event": "cart", "items": ["a"], "user": {"name": "ann"}}


def test_extra_containers_of_a_copied_record_keep_their_call_time_state() -> None:
    """An ``extra`` list or dict of a record with an exception formats as it was at the call."""
    logger = logging.getLogger("aioqlog.tests.handler")
    user = {"name": "alice", "roles": ["admin"]}
    try:
        raise KeyError("k")
    except KeyError:
        record = logger.makeRecord(
            logger.name,
            logging.ERROR,
            __file__,
            10,
            "login",
            (),
            sys.exc_info(),
            extra={"user": user},
        )
    prepared = snapshot(record)
    user["name"] = "mallory"
    user["roles"].append("root")  # type: ignore[attr-defined]
    assert prepared.user == {"name": "alice", "roles": ["admin"]}  # type: ignore[attr-defined]
    assert record.user is user  # type: ignore[attr-defined]


def test_immutable_extra_values_cost_no_copy() -> None:
    """The common path never looks for ``extra``: the record goes as it is."""
    logger = logging.getLogger("aioqlog.tests.handler")
    record = logger.makeRecord(
        logger.name, logging.INFO, __file__, 10, "x %s", (1,), None, extra={"request_id": "r-1"}
    )
    assert snapshot(record) is record


def test_a_self_containing_extra_is_copied_without_recursing_forever() -> None:
    """A list that contains itself is copied once, with the same shape."""
    logger = logging.getLogger("aioqlog.tests.handler")
    loop: list[Any] = [1]
    loop.append(loop)
    record = logger.makeRecord(
        logger.name, logging.INFO, __file__, 10, "x %s", ([],), None, extra={"loop": loop}
    )
    copied = snapshot(record).loop  # type: ignore[attr-defined]
    assert copied is not loop
    assert copied[1] is copied


def test_a_record_with_an_exception_is_always_the_queues_own_copy() -> None:
    """Handlers beside the QueueHandler cache exc_text on their record, not on the queued one."""
    logger = logging.getLogger("aioqlog.tests.handler")
    try:
        raise KeyError("k")
    except KeyError:
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 10, "x", (), sys.exc_info()
        )
    prepared = snapshot(record)
    assert prepared is not record
    assert prepared.exc_info is record.exc_info


class _Message:
    def __init__(self) -> None:
        self.text = "first"

    def __str__(self) -> str:
        return self.text


def test_a_message_object_prints_as_it_was_at_the_call() -> None:
    """A non-str message object is rendered through str() at the call."""
    message = _Message()
    prepared = snapshot(_make(message))
    message.text = "second"
    assert prepared.getMessage() == "first"


def test_a_formatter_on_the_queue_handler_keeps_stdlib_semantics() -> None:
    """With a formatter set on the QueueHandler, msg becomes the formatted text."""
    handler = aioqlog.QueueHandler(aioqlog.LogQueue())
    handler.setFormatter(logging.Formatter("%(levelname)s:%(message)s"))
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed %s", ("op",), sys.exc_info()
        )
    prepared = handler.prepare(record)
    assert prepared is not record
    assert prepared.msg.startswith("ERROR:failed op\nTraceback")
    assert prepared.args is None
    assert prepared.exc_info is None


def test_filters_decide_what_is_enqueued(logger: logging.Logger) -> None:
    """A filter on the QueueHandler keeps a record off the queue."""
    q = aioqlog.LogQueue()
    handler = aioqlog.QueueHandler(q)
    handler.addFilter(lambda r: r.levelno >= logging.WARNING)
    logger.addHandler(handler)
    logger.info("dropped by the filter")
    logger.warning("kept")
    assert q.qsize() == 1


@pytest.mark.skipif(sys.version_info < (3, 12), reason="filters return records from 3.12")
def test_a_filter_may_replace_the_record(logger: logging.Logger) -> None:
    """On 3.12+, a filter that returns a record has that record enqueued."""
    q = aioqlog.LogQueue()
    handler = aioqlog.QueueHandler(q)

    def redact(record: logging.LogRecord) -> logging.LogRecord:
        clone = logging.makeLogRecord(record.__dict__)
        clone.msg = "[redacted]"
        return clone

    handler.addFilter(redact)  # type: ignore[arg-type]  # 3.12+ filters may return records
    logger.addHandler(handler)
    logger.info("secret")
    rec = Recorder()
    aioqlog.QueueListener(q, rec)
    assert rec.messages() == ["[redacted]"]


class _Rejecting(aioqlog.QueueHandler):
    """Its own filter: keeps warnings and above only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def test_a_subclass_filter_decides_what_is_enqueued(logger: logging.Logger) -> None:
    """A subclass's own ``filter`` runs for every record, no filter added, as the stdlib's."""
    q = aioqlog.LogQueue()
    logger.addHandler(_Rejecting(q))
    logger.info("dropped by the filter")
    logger.warning("kept")
    assert [r.getMessage() for r, _ in q._peek()] == ["kept"]
    q._take(1)


def test_a_filter_that_raises_goes_to_handle_error(logger: logging.Logger) -> None:
    """A filter on the QueueHandler that raises: handleError, nothing queued, no raise."""
    q = aioqlog.LogQueue()
    handler = aioqlog.QueueHandler(q)
    reported: list[logging.LogRecord] = []
    handler.handleError = reported.append  # type: ignore[method-assign, assignment]

    def broken(record: logging.LogRecord) -> bool:
        if record.getMessage() == "boom":
            raise RuntimeError("filter blew up")
        return True

    handler.addFilter(broken)
    logger.addHandler(handler)
    logger.info("before")
    logger.info("boom")
    logger.info("after")
    assert [r.getMessage() for r in reported] == ["boom"]
    assert [r.getMessage() for r, _ in q._peek()] == ["before", "after"]
    q._take(2)


class _Upper(aioqlog.QueueHandler):
    """Its own format: the message in capitals."""

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage().upper()


def test_a_subclass_format_is_applied_at_the_call_as_the_stdlib_does(
    logger: logging.Logger,
) -> None:
    """A subclass's own ``format`` makes ``msg`` its text, as the stdlib's QueueHandler."""
    q = aioqlog.LogQueue()
    logger.addHandler(_Upper(q))
    logger.info("hello %s", "x")
    [(queued, _)] = q._peek()
    q._take(1)
    assert queued.msg == "HELLO X"
    assert queued.args is None


def test_handle_returns_what_the_stdlib_returns() -> None:
    """handle() returns the record (3.12+) or True, and a false value when filtered."""
    handler = aioqlog.QueueHandler(aioqlog.LogQueue())
    record = _make("x")
    expected = record if sys.version_info >= (3, 12) else True
    assert handler.handle(record) == expected
    handler.addFilter(lambda r: False)
    assert not handler.handle(record)


_REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="-")


class _ThroughPutNowait(aioqlog.QueueHandler):
    """Puts each record on the queue with ``LogQueue.put_nowait`` (its own enqueue)."""

    def enqueue(self, record: logging.LogRecord) -> None:
        self.queue.put_nowait(record)


class _SeesRequests(logging.Handler):
    """Keeps each message with the request id its handling sees; can be waited for."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []
        self.arrived = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.arrived:
            self.seen.append((record.getMessage(), _REQUEST.get()))
            self.arrived.notify_all()

    def wait_for(self, count: int) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.seen) >= count, STALL)


def _walk(kind: type[aioqlog.QueueHandler]) -> list[object]:
    """Log through each state a queue can be in; return what each step left."""
    q = aioqlog.LogQueue(maxsize=5)
    handler = kind(q)
    log = logging.getLogger(f"aioqlog.tests.handler.walk.{kind.__name__}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(handler)
    steps: list[object] = []

    def left() -> tuple[int, int, int]:
        return q.qsize(), len(q._contexts), q.dropped

    try:
        log.info("no listener: waits")
        steps.append(left())
        request = contextvars.copy_context()
        request.run(_REQUEST.set, "r1")
        request.run(log.info, "with a variable")
        request.run(log.info, "the same variables")
        steps.append(left())
        contexts = {id(ctx) for _, ctx in q._peek()[1:]}
        steps.append(len(contexts))  # the two share one context
        twice = log.makeRecord(log.name, logging.INFO, __file__, 1, "put twice", (), None)
        request.run(handler.handle, twice)
        request.run(handler.handle, twice)  # queued already: it carries its context
        steps.append(left())
        log.info("past the bound: dropped")
        steps.append(left())
        sees = _SeesRequests()
        listener = aioqlog.QueueListener(q, sees)  # not started: delivers in the caller
        steps.append(list(sees.seen))
        request.run(log.info, "delivered in the caller")
        steps.append(sees.seen[-1:])

        async def served() -> None:
            async with listener:
                await asyncio.to_thread(request.run, log.info, "from a thread")
                await asyncio.to_thread(sees.wait_for, 8)
                log.info("from the loop")
                await asyncio.to_thread(sees.wait_for, 9)

        asyncio.run(served())
        steps.append(sees.seen[-2:])
        steps.append(left())
    finally:
        log.removeHandler(handler)
        logging.Logger.manager.loggerDict.pop(log.name, None)
    return steps


def test_handle_puts_records_as_put_nowait_does() -> None:
    """``handle`` does ``LogQueue.put_nowait``'s steps inline: in every state, the same outcome.

    The queue with no listener, a variable set (and the same variables
    again), a record put twice, a full queue, a listener that delivers in the
    caller, and one that serves (rung from another thread, and from its loop).
    """
    expected: list[object] = [
        (1, 0, 0),
        (3, 2, 0),
        1,
        (5, 3, 0),
        (5, 3, 1),
        [
            ("no listener: waits", "-"),
            ("with a variable", "r1"),
            ("the same variables", "r1"),
            ("put twice", "r1"),
            ("put twice", "r1"),
            (
                "aioqlog dropped 1 records: the queue was full (maxsize=5, overflow='drop_new')",
                "-",
            ),
        ],
        [("delivered in the caller", "r1")],
        [("from a thread", "r1"), ("from the loop", "-")],
        (0, 0, 1),
    ]
    # Each walk starts where no variable is set.
    assert contextvars.Context().run(_walk, aioqlog.QueueHandler) == expected
    assert contextvars.Context().run(_walk, _ThroughPutNowait) == expected


class _OwnPut(aioqlog.LogQueue):
    """A queue with a put_nowait of its own: counts its calls."""

    calls = 0

    def put_nowait(self, record: logging.LogRecord) -> None:
        type(self).calls += 1
        super().put_nowait(record)


def test_a_queue_with_its_own_put_nowait_has_it_called() -> None:
    """Where the queue's class defines its own ``put_nowait``, ``handle`` calls it."""
    q = _OwnPut()
    handler = aioqlog.QueueHandler(q)
    handler.handle(_make("x"))
    handler.handle(_make("y"))
    assert _OwnPut.calls == 2
    assert q.qsize() == 2
    q._take(2)


class _BrokenQueue(aioqlog.LogQueue):
    """A queue whose put_nowait fails."""

    def put_nowait(self, record: logging.LogRecord) -> None:
        raise OSError("disk on fire")


class _BrokenDeque(collections.deque):  # type: ignore[type-arg]
    """A deque that cannot take a record."""

    def append(self, item: Any) -> None:
        raise OSError("disk on fire")


@pytest.mark.parametrize("where", ["put_nowait", "inline"])
def test_emit_never_raises_into_the_caller(where: str) -> None:
    """A failure while enqueueing goes to handleError; the log call returns normally.

    Both ways a record goes on the queue: a queue's own ``put_nowait``, and
    the steps ``handle`` does inline for a ``LogQueue`` that keeps its own.
    """
    if where == "put_nowait":
        q: aioqlog.LogQueue = _BrokenQueue()
    else:
        q = aioqlog.LogQueue()
        q._items = _BrokenDeque()
    handler = aioqlog.QueueHandler(q)
    reported: list[logging.LogRecord] = []
    handler.handleError = reported.append  # type: ignore[method-assign, assignment]
    record = _make("x")
    handler.handle(record)
    assert reported == [record]


class _Redacting(aioqlog.QueueHandler):
    """Overrides prepare(): every record it enqueues says so."""

    def prepare(self, record: logging.LogRecord) -> Any:
        prepared = super().prepare(record)
        prepared.msg = "redacted"
        prepared.args = ()
        return prepared


class _Counting(aioqlog.QueueHandler):
    """Overrides enqueue(): counts what it puts on the queue."""

    count = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        type(self).count += 1
        super().enqueue(record)


class _Emitting(aioqlog.QueueHandler):
    """Overrides emit(): tags each record before the usual emit."""

    def emit(self, record: logging.LogRecord) -> None:
        record.tagged = True
        super().emit(record)


def test_each_overridden_step_of_emit_is_called() -> None:
    """A subclass's own emit(), prepare() or enqueue() runs for every log call."""
    redacting = _Redacting(aioqlog.LogQueue())
    counting = _Counting(aioqlog.LogQueue())
    emitting = _Emitting(aioqlog.LogQueue())
    for handler in (redacting, counting, emitting):
        handler.queue._right.clear()  # as while a listener delivers: the record stays queued
        handler.handle(_make("secret %s", "token"))
    assert redacting.queue._peek()[0][0].getMessage() == "redacted"
    assert _Counting.count == 1
    assert getattr(emitting.queue._peek()[0][0], "tagged", False) is True


def test_a_record_with_an_exception_is_queued_with_its_traceback_rendered() -> None:
    """The exception's text is rendered at the call, on the queued copy and the caller's record."""
    handler = aioqlog.QueueHandler(aioqlog.LogQueue())
    aioqlog.QueueListener(handler.queue, Recorder())  # whose formatter renders it
    handler.queue._right.clear()  # as while a listener delivers: the record stays queued
    logger = logging.getLogger("aioqlog.tests.handler")
    try:
        raise KeyError("k")
    except KeyError:
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 10, "x", (), sys.exc_info()
        )
    handler.handle(record)
    queued = handler.queue._peek()[0][0]
    assert queued is not record
    assert queued.exc_text is not None
    assert "KeyError: 'k'" in queued.exc_text
    assert record.exc_text == queued.exc_text
