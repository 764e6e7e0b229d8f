"""A user's config folder (``--config-dir``, ``hydra.searchpath``) may add configs, not replace
shipped ones: Hydra searches the shipped ``conf/`` first, so a file of the same name in the user's
folder would be silently ignored. ``check_config_dirs`` refuses such a file (docs/extending.md).

Imports neither torch nor Hydra's internals: it reads ``hydra.runtime.config_sources``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from samt.errors import ConfigError


def shadowed_configs(sources: list[Any]) -> list[tuple[str, Path, Path]]:
    """``(provider, folder, relative path)`` of each yaml file in a file source searched after
    the shipped configs (provider ``main``) whose name a shipped file has, with other content
    (an identical copy is harmless). ``sources``: ``hydra.runtime.config_sources`` entries (with
    ``path``, ``schema`` and ``provider``)."""
    found: list[tuple[str, Path, Path]] = []
    shipped: Path | None = None
    for source in sources:
        if source.get("schema") != "file" or not source.get("path"):
            continue
        if source.get("provider") == "main" and shipped is None:
            shipped = Path(source["path"])
            continue
        if shipped is None:  # searched before the shipped configs: it wins, nothing is hidden
            continue
        folder = Path(source["path"])
        if not folder.is_dir() or folder.resolve() == shipped.resolve():
            continue
        for file in sorted(folder.rglob("*.yaml")):
            relative = file.relative_to(folder)
            theirs = shipped / relative
            try:
                if theirs.is_file() and file.read_bytes() != theirs.read_bytes():
                    found.append((str(source.get("provider")), folder, relative))
            except OSError:  # unreadable: Hydra reports it when it loads the file
                continue
    return found


def check_config_dirs(config: Any) -> None:
    """``ConfigError`` (one line: the folder, the file, what to do) when a user's config folder
    holds a file that a shipped config of the same name hides."""
    try:
        sources = [dict(s) for s in config.hydra.runtime.config_sources]
    except Exception:  # no Hydra runtime node (a config composed outside samt-run)
        return
    clashes = shadowed_configs(sources)
    if not clashes:
        return
    provider, folder, relative = clashes[0]
    where = f"--config-dir {folder}" if provider == "command-line" else \
        f"hydra.searchpath entry {folder}"
    group, name = relative.parent.as_posix(), relative.stem
    more = f" (and {len(clashes) - 1} more: {', '.join(str(c[2]) for c in clashes[1:])})" \
        if len(clashes) > 1 else ""
    example = (f"e.g. {group}/my_{name}.yaml, selected with {group}=my_{name}, starting "
               f"from the shipped one with defaults: [{name}, _self_]"
               if group != "." else "e.g. my_config.yaml, selected with --config-name")
    raise ConfigError(
        f"{where}: {relative.as_posix()}{more} has the name of a shipped config, which is "
        "searched first, so yours would be silently ignored; give it a name of its own "
        f"({example})")


def _yaml_problem(file: Path) -> str | None:
    """Why ``file`` is not valid YAML (first line of the parser's message, with its place), or
    None."""
    import yaml

    try:
        yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def check_command_line(argv: list[str], groups: list[str]) -> None:
    """Before Hydra composes (whose errors here would be tracebacks): ``ConfigError`` for a
    config group set to null (``optimizer=null``; ``groups``: the config groups) and for a yaml
    file in ``--config-dir`` that does not parse. Anything else is left to Hydra."""
    from hydra._internal.utils import get_args_parser

    try:
        args, _ = get_args_parser().parse_known_args(argv)
    except SystemExit:  # Hydra's own parser reports it
        return
    for override in args.overrides or []:
        key, sep, value = override.partition("=")
        if sep and key.lstrip("+~") in groups and value.strip().lower() in ("null", "~"):
            raise ConfigError(f"{key}={value} is invalid: the config group {key.lstrip('+~')} "
                              "needs one of its options (samt-run --help lists them)")
    folder = Path(args.config_dir) if args.config_dir else None
    if folder is None or not folder.is_dir():
        return
    for file in sorted(folder.rglob("*.yaml")):
        problem = _yaml_problem(file)
        if problem:
            raise ConfigError(f"--config-dir {folder}: {file.relative_to(folder).as_posix()} is "
                              f"not valid YAML: {problem}")
