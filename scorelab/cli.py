"""The command line's machinery: each command declares its own flags, so `train.py CMD --help`
shows exactly those (with the defaults that command uses) and a flag that the command does not
take is refused by name before anything is loaded.

A command is a `Command` of `Flag`s; `parse` builds a fresh absl `FlagValues` holding only that
command's flags (and, where it takes `--config`, ml_collections' config file with its
`--config.a.b=value` overrides), parses the arguments into it and returns it. The table of
commands lives in train.py; nothing here knows their names.
"""
import dataclasses
import sys
import textwrap
from typing import Any, Callable

from absl import flags
from ml_collections import config_flags

_DEFINE = {"string": flags.DEFINE_string, "integer": flags.DEFINE_integer,
           "float": flags.DEFINE_float, "bool": flags.DEFINE_bool}


@dataclasses.dataclass(frozen=True)
class Flag:
    """One flag: `kind` is string / integer / float / bool / enum (with `choices`) / config (an
    ml_collections config file, whose fields take overrides)."""
    name: str
    kind: str
    default: Any
    help: str
    choices: tuple = ()

    def __call__(self, default=None, help=None) -> "Flag":
        """The same flag with another default (and help) for one command."""
        return dataclasses.replace(self, default=self.default if default is None else default,
                                   help=self.help if help is None else help)


@dataclasses.dataclass(frozen=True)
class Command:
    summary: str
    flags: tuple[Flag, ...]
    run: Callable[[flags.FlagValues], Any]


class UsageError(ValueError):
    """A command line that names no command, or a flag the command does not take."""


def define(command: Command, argv: list[str]) -> flags.FlagValues:
    """A FlagValues with `command`'s flags and nothing else; a config file flag reads its
    `--config.a.b=value` overrides from `argv`."""
    values = flags.FlagValues()
    for flag in command.flags:
        if flag.kind == "config":
            config_flags.DEFINE_config_file(flag.name, flag.default, flag.help,
                                            flag_values=values, lock_config=True, sys_argv=argv)
        elif flag.kind == "enum":
            flags.DEFINE_enum(flag.name, flag.default, list(flag.choices), flag.help,
                              flag_values=values)
        else:
            _DEFINE[flag.kind](flag.name, flag.default, flag.help, flag_values=values)
    return values


def split(argv: list[str], commands: dict[str, Command], default: str) -> tuple[str, list[str]]:
    """(command, its arguments): the command is the first argument that is not a flag."""
    args = argv[1:]
    positional = [a for a in args if not a.startswith("-")]
    if not positional:
        return default, args
    name = positional[0]
    if name not in commands:
        raise UsageError(f"command must be one of {list(commands)}, got {name!r}")
    args.remove(name)
    return name, args


def parse(argv: list[str], commands: dict[str, Command], default: str):
    """(command name, its parsed FlagValues), or a UsageError that names the flag, the command
    and the commands that do take it."""
    name, args = split(argv, commands, default)
    argv = [argv[0], *args]
    try:
        values = define(commands[name], argv)  # the config file and its overrides load here
        rest = values(argv)
    except flags.UnrecognizedFlagError as e:
        base = e.flagname.split(".")[0]  # --config.a.b belongs where --config does
        owners = [c for c, cmd in commands.items() if any(f.name == base for f in cmd.flags)]
        where = f"; it belongs to {', '.join(owners)}" if owners else ""
        raise UsageError(f"--{e.flagname} is not a flag of `{name}`{where} (see "
                         f"`train.py {name} --help`)") from None
    except flags.Error as e:  # a bad value: absl names the flag and the value
        raise UsageError(f"{name}: {e}") from None
    except AttributeError as e:  # an override of a field the config does not have
        inner = e.args[0] if e.args else e  # ml_collections wraps its KeyError
        text = inner.args[0] if isinstance(inner, KeyError) and inner.args else str(inner)
        raise UsageError(f"{name}: no such config field {text}") from None
    if len(rest) > 1:
        raise UsageError(f"`{name}` takes flags only, got the arguments {rest[1:]}")
    return name, values


def wants_help(argv: list[str]) -> bool:
    return any(a in ("-h", "--help", "-help", "--helpshort") for a in argv[1:])


def help_text(name: str, command: Command, program: str = "train.py") -> str:
    """`command`'s usage: its summary, then each flag with the default this command uses."""
    lines = [f"usage: python {program} {name} [--flag=value ...]", "",
             textwrap.fill(command.summary, 92), "", "flags:"]
    for flag in command.flags:
        default = "" if flag.kind == "config" else f" (default: {flag.default!r})"
        choices = f" One of {list(flag.choices)}." if flag.choices else ""
        text = textwrap.fill(f"{flag.help}{choices}{default}", 88, initial_indent="    ",
                             subsequent_indent="    ")
        lines += [f"  --{flag.name}", text]
        if flag.kind == "config":
            lines += [f"    Any field can be overridden: --{flag.name}.training.n_steps=500 "
                      f"--{flag.name}.optim.lr=1e-3", f"    (default file: {flag.default})"]
    return "\n".join(lines)


def overview(commands: dict[str, Command], default: str, program: str = "train.py") -> str:
    width = max(map(len, commands))
    lines = [f"usage: python {program} [COMMAND] [--flag=value ...]   (COMMAND defaults to "
             f"{default})", "", "commands:"]
    for name, command in commands.items():
        first = command.summary.split(". ")[0].split("; ")[0].rstrip(".")
        lines.append(f"  {name:<{width}}  {first}")
    lines += ["", f"`python {program} COMMAND --help` lists that command's flags."]
    return "\n".join(lines)


def main(argv: list[str], commands: dict[str, Command], default: str) -> int:
    """Parses `argv` and runs its command; prints help (status 0) or a usage error (status 2)."""
    try:
        if wants_help(argv):
            name, _ = split([a for a in argv if a not in ("-h", "--help", "-help",
                                                          "--helpshort")], commands, default)
            explicit = any(not a.startswith("-") for a in argv[1:])
            print(help_text(name, commands[name]) if explicit else
                  overview(commands, default))
            return 0
        name, values = parse(argv, commands, default)
    except UsageError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    flags.FLAGS([argv[0]])  # absl's own flags (logging) at their defaults
    commands[name].run(values)
    return 0
