"""Command-line flags generated from config dataclasses, and the grouped `--help` listing.

A settings dataclass (`RunConfig`, `ExportOptions`) spells each setting once: its field's
name, default, type and `metadata={"help": ..., "group": ...}`. `define_config_flags`
turns every field into an absl flag of the same name, default and help; after parsing,
`config_from_flags` builds the dataclass back. Types map as:

  bool -> DEFINE_bool, int -> DEFINE_integer, float -> DEFINE_float, str -> DEFINE_string,
  tuple[int, ...] / tuple[float, ...] -> a comma-separated list whose items parse as numbers
  (`TypedListParser`: `--image_size=32,a` does not parse; a field's metadata `"items"` may
  give the function that parses one item into several, as `--image_size=128:224:32` does),
  tuple[str, ...] -> DEFINE_list,
  `X | None` -> X with default None.

A field's metadata `"path": "input"` (or `define(..., path="input")`) marks a flag whose
value is a file or directory the tool reads (`path_kind`).

Choices (`method`, `space`, ...) stay string flags: the dataclass's own `validate()` checks
them, so the command line and the Python API give the same one-line error.

Each flag has a help group (the field's metadata group, or `define(..., group=...)` for a
tool's own flags); `grouped_help` lists a tool's own flags by group for `--help`.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import textwrap
import types
import typing
from typing import Any, Callable, Iterable, TypeVar

from absl import flags

from ofa_tf.errors import OfaError

FLAGS = flags.FLAGS
DEFAULT_GROUP = "flags"
# modules whose flags are a tool's own (not absl's, TensorFlow's or a library's)
OWN_MODULE_PREFIXES = ("ofa_tf", "tools", "benchmarks")

T = TypeVar("T")
_PLURALS = {int: "integers", float: "numbers", str: "strings"}
_GROUPS: dict[flags.Flag, str] = {}  # help group of each flag defined here
_PATHS: dict[flags.Flag, str] = {}  # "input" for a flag naming a file or directory the tool reads


class TypedListParser(flags.ListParser):
    """A comma-separated list whose every item must parse with `item_type` (int, float, or a
    function that returns the item, or a list of items, or raises ValueError / OfaError); the
    flag's value is the parsed items, so `--image_size=32,a` is a flag that does not parse,
    like `--epochs=abc`."""

    def __init__(self, item_type: Callable[[str], Any], items: str):
        super().__init__()
        self.item_type, self.items = item_type, items
        self.syntactic_help = f"comma-separated {items}"

    def parse(self, argument: Any) -> list[Any]:
        values = super().parse(argument)
        try:
            parsed = [self.item_type(v) for v in values]
            return [item for value in parsed for item in (value if isinstance(value, list) else [value])]
        except OfaError as e:  # the item check's own message (`flops=abc: expected a number like 150M`)
            raise ValueError(str(e)) from None
        except (TypeError, ValueError):
            raise ValueError(f"expected {self.items}") from None


def define(kind: str, name: str, default: Any, help: str, *, group: str,  # noqa: A002 (absl's name)
           flag_values: flags.FlagValues = FLAGS, item_type: Callable[[str], Any] | None = None,
           items: str | None = None, path: str | None = None, **kwargs: Any) -> flags.FlagHolder:
    """`flags.DEFINE_<kind>(name, default, help, ...)` that also records the flag's help group.

    `kind` is an absl DEFINE suffix: string, integer, float, bool, list, enum (pass
    `enum_values=`), multi_string. A list with `item_type` (and `items`, its plural for
    messages: "integers") checks every item when parsed (`TypedListParser`). `path="input"`
    marks a file or directory the tool reads.
    """
    if kind == "list" and item_type is not None:
        holder = flags.DEFINE(TypedListParser(item_type, items or _PLURALS.get(item_type, "values")), name, default,
                              help, flag_values=flag_values, serializer=flags.CsvListSerializer(","), **kwargs)
    else:
        holder = getattr(flags, f"DEFINE_{kind}")(name=name, default=default, help=help, flag_values=flag_values,
                                                  **kwargs)
    _GROUPS[flag_values[name]] = group
    if path is not None:
        _PATHS[flag_values[name]] = path
    return holder


def definer(flag_values: flags.FlagValues = FLAGS, group: str | None = None) -> Callable[..., flags.FlagHolder]:
    """`define` bound to `flag_values` (and, when given, one `group`): a tool's flag list
    then reads `add(kind, name, default, help, group)` line by line."""
    def add(kind: str, name: str, default: Any, help_text: str, *group_name: str, **kwargs: Any) -> flags.FlagHolder:
        return define(kind, name, default, help_text, group=group_name[0] if group_name else group,
                      flag_values=flag_values, **kwargs)
    return add


def define_config_flags(cls: type, flag_values: flags.FlagValues = FLAGS, exclude: Iterable[str] = (),
                        only: Iterable[str] | None = None) -> list[str]:
    """Defines one flag per field of the dataclass `cls` (fields in `exclude` left out, or
    only those in `only`); returns the flag names, in field order."""
    hints = typing.get_type_hints(cls)
    excluded, wanted = set(exclude), None if only is None else set(only)
    names = []
    for field in dataclasses.fields(cls):
        if field.name in excluded or (wanted is not None and field.name not in wanted):
            continue
        kind, item_type, _ = _flag_kind(cls, field.name, hints[field.name])
        default = field.default
        if default is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{field.name}: a flag needs a default")
        if kind == "list" and default is not None:
            default = [str(v) for v in default]
        help_text = _dash_names(field.metadata.get("help", ""), [f.name for f in dataclasses.fields(cls)])
        item_parser = field.metadata.get("items") or (item_type if item_type in (int, float) else None)
        define(kind, field.name, default, help_text, group=field.metadata.get("group", DEFAULT_GROUP),
               flag_values=flag_values, item_type=item_parser, items=_PLURALS.get(item_type),
               path=field.metadata.get("path"))
        names.append(field.name)
    return names


def config_from_flags(cls: type[T], flag_values: flags.FlagValues = FLAGS, **overrides: Any) -> T:
    """The dataclass `cls` with each field that is a flag taken from `flag_values` (parsed),
    other fields at their defaults, then `overrides`.

    Raises:
      OfaError: a list flag of integers holds something else (`image_size=a: expected integers`).
    """
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        if field.name in overrides or field.name not in flag_values:
            continue
        value = flag_values[field.name].value
        kind, item_type, _ = _flag_kind(cls, field.name, hints[field.name])
        if kind == "list" and value is not None:
            try:
                value = tuple(item_type(v) for v in value)
            except ValueError:
                raise OfaError(f"{field.name}={','.join(map(str, value))}: expected {_PLURALS[item_type]}") from None
        values[field.name] = value
    return cls(**values, **overrides)


def _flag_kind(cls: type, name: str, hint: Any) -> tuple[str, type | None, bool]:
    """(absl DEFINE suffix, list item type, optional) of a field's type."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            raise TypeError(f"{cls.__name__}.{name}: no flag type for {hint}")
        hint = args[0]
    scalar = {bool: "bool", int: "integer", float: "float", str: "string"}
    if hint in scalar:
        return scalar[hint], None, optional
    if typing.get_origin(hint) in (tuple, list):
        items = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if len(set(items)) == 1 and items[0] in (int, float, str):
            return "list", items[0], optional
    raise TypeError(f"{cls.__name__}.{name}: no flag type for {hint}")


def _dash_names(text: str, names: list[str]) -> str:
    """Help text words settings as flags: `lr_schedule=phase` -> `--lr_schedule=phase`."""
    if not names:
        return text
    pattern = r"(?<![\w-])(" + "|".join(map(re.escape, names)) + r")(?==)"
    return re.sub(pattern, r"--\1", text)


# ------------------------------------------------------------------------------------ help
def group_of(flag: flags.Flag) -> str:
    return _GROUPS.get(flag, DEFAULT_GROUP)


def path_kind(flag: flags.Flag) -> str | None:
    """"input" when the flag names a file or directory the tool reads, else None."""
    return _PATHS.get(flag)


def own_flags(flag_values: flags.FlagValues = FLAGS) -> list[flags.Flag]:
    """The flags the running tool defined (through `define`, in an `ofa_tf`, `tools` or
    `benchmarks` module, or in the main script), in definition order; not absl's own."""
    main_script = sys.argv[0] if sys.argv else None
    own_names = set()
    for module, module_flags in flag_values.flags_by_module_dict().items():
        if module == main_script or module.split(".")[0] in OWN_MODULE_PREFIXES:
            own_names.update(flag.name for flag in module_flags)
    result = []
    for name in flag_values:  # definition order; short names too
        flag = flag_values[name]
        if flag.name == name and (name in own_names or flag in _GROUPS):
            result.append(flag)
    return result


def grouped_help(flag_values: flags.FlagValues = FLAGS, width: int = 100) -> str:
    """The tool's own flags, by help group (groups in order of their first flag)."""
    groups: dict[str, list[flags.Flag]] = {}
    for flag in own_flags(flag_values):
        groups.setdefault(group_of(flag), []).append(flag)
    lines = []
    for group, members in groups.items():
        lines.append(f"{group}:")
        for flag in members:
            lines.append(_flag_help(flag, width))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _flag_help(flag: flags.Flag, width: int) -> str:
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    details = []
    if flag.default is not None:
        default = flag.default
        if isinstance(default, (list, tuple)):
            default = ",".join(str(v) for v in default)
        elif isinstance(default, bool):
            default = str(default).lower()
        details.append(f"default: {default}")
    kind = flag.parser.syntactic_help
    if kind and not flag.boolean and kind != "a string":
        details.append(kind)
    text = f"{name}: {flag.help or ''}" + (f" ({'; '.join(details)})" if details else "")
    return textwrap.fill(text, width=width, initial_indent="  ", subsequent_indent="      ",
                         break_on_hyphens=False, break_long_words=False)
