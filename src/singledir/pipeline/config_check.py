"""Read and check a workflow config before any job runs: one short error naming the file,
the line and the key.

What Snakemake does on its own, and what this module adds:

* ``--configfile my.yaml`` on the command line *describes the whole run*. Snakemake's
  ``configfile:`` directive would merge the command-line files over ``config/config.yaml``,
  so a user's config silently inherited families, experiments and grid values it never
  named. The Snakefile therefore has no ``configfile:`` directive; it calls
  :func:`workflow_config`, which reads the command-line files when there are any
  (``workflow.overwrite_configfiles``) and ``config/config.yaml`` only when there are none.
  ``--config key=value`` still applies on top.
* Keys a config omits take the defaults written in ``workflow/schemas/config.schema.yaml``
  (small, never paper-scale), filled in by :func:`validate`, which also records which
  values came from a default (the plan summary names them).
* The YAML is read with a loader that rejects a key given twice in one mapping (file and
  line) and reports syntax errors with file, line and column. (Snakemake parses
  command-line config files itself before the Snakefile runs; a *syntax* error there gets
  Snakemake's own one-line message. ``python -m singledir.pipeline.plan FILE`` names the line.)
* Schema errors are one short message: the key's dotted path, the file and line where it
  is set, and for an unknown key the nearest valid one (``difflib``).
"""

from __future__ import annotations

import copy
import decimal
import difflib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from singledir.pipeline.plan import ConfigError, check_config

DEFAULT_CONFIG = "config/config.yaml"


def schema_path() -> Path:
    """The workflow's config schema (next to the sources in a checkout)."""
    for root in (Path(__file__).resolve().parents[3], Path(os.environ.get("SINGLEDIR_ROOT", ".")), Path.cwd()):
        path = root / "workflow" / "schemas" / "config.schema.yaml"
        if path.is_file():
            return path
    raise FileNotFoundError("workflow/schemas/config.schema.yaml not found; run from the repository root")


class ConfigFileError(ConfigError):
    """A config file cannot be read, or its content breaks the schema."""


# --- strict YAML ---------------------------------------------------------------------

def _walk(node, path, where, positions, file):
    """Record the line of every key; reject a key given twice in one mapping."""
    if isinstance(node, yaml.MappingNode):
        seen: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                dotted = ".".join(map(str, path + (key,)))
                raise ConfigFileError(
                    f"{file}, line {line}: duplicate key {dotted!r} (first given on line {seen[key]}); "
                    f"YAML keeps only the last one. Remove or rename one of them.")
            seen[key] = line
            positions[path + (key,)] = (file, line)
            _walk(value_node, path + (key,), where, positions, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), where, positions, file)


def load_yaml(path, positions: dict | None = None) -> dict:
    """Load one YAML (or JSON) config file; duplicate keys and syntax errors are errors
    naming the file and line. ``positions`` receives key path -> (file, line)."""
    path = str(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ConfigFileError(
                f"{path}: not a regular file (a pipe, as `--configfile <(...)` gives): a config file is read more "
                f"than once (by Snakemake, by this check, by every job), and a pipe gives its content once. "
                f"Write the config to a file first (`... > my.yaml`) and pass --configfile my.yaml")
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(f"config file not found: {path}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _walk(node, (), None, positions if positions is not None else {}, path)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(str(x) for x in (err.context, err.problem) if x)
        raise ConfigFileError(f"{path}{where}: not valid YAML: {what}. "
                              f"(Indent with spaces only, close every bracket and quote.)") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: a config file must be a mapping of keys (scale, device, families, ...), "
                              f"not a {type(data).__name__}")
    return data


def merge(base: dict, override: dict) -> dict:
    """Snakemake's update_config: nested mappings merge, everything else replaces."""
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


# --- schema with defaults ------------------------------------------------------------

def _validator_class(filled: list):
    """A Draft 2020-12 validator that fills in every missing property with a ``default``
    (recording (id of the mapping, key) in ``filled``) before validating it."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    properties = base.VALIDATORS["properties"]

    def fill_defaults(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
                    filled.append((id(instance), name))
        yield from properties(validator, props, instance, schema)

    return jsonschema.validators.extend(base, {"properties": fill_defaults})


def _dotted(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _location(path, positions) -> str:
    """'file, line N' where the deepest given part of ``path`` is set."""
    path = tuple(path)
    for n in range(len(path), 0, -1):
        if path[:n] in positions:
            file, line = positions[path[:n]]
            return f"{file}, line {line}" if line else str(file)
    return ""


def _short_message(err, positions, files) -> str:
    path = list(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = list(err.schema.get("properties", {}))
        unknown = [k for k in err.instance if k not in allowed]
        key = unknown[0] if unknown else "?"
        near = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
        hint = f"did you mean {near[0]!r}? " if near else ""
        where = _location(path + [key], positions) or ", ".join(map(str, files))
        return (f"{where}: unknown key {_dotted(path + [key])!r}; {hint}"
                f"valid keys here: {', '.join(allowed)}")
    where = _location(path, positions) or ", ".join(map(str, files))
    if err.validator == "required":
        return f"{where}: {_dotted(path)}: {err.message} (see workflow/schemas/config.schema.yaml)"
    value = repr(err.instance)
    if len(value) > 80:
        value = value[:77] + "..."
    if err.parent is not None and err.parent.validator in ("oneOf", "anyOf"):
        err = err.parent  # a value none of the alternatives admits: say what they are
        err.message = f"{value} is not valid here"
    hint = err.schema.get("description")
    hint = f" ({' '.join(str(hint).split())})" if hint and len(str(hint)) < 200 else ""
    msg = err.message if len(err.message) < 200 else f"{value} is not valid here"
    return f"{where}: {_dotted(path)}: {msg}{_number_hint(err.instance)}{hint}"


def _number_hint(value) -> str:
    """For a number written so that YAML reads it as text: the spellings it reads as a
    number. PyYAML follows YAML 1.1, whose floats need a dot and a signed exponent:
    ``1e-3`` and ``1.0e3`` are strings, ``1.0e-3`` and ``0.001`` numbers."""
    if not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    if number != number or number in (float("inf"), float("-inf")):
        return ""
    if "e" not in value.lower():
        return f"; {value!r} is quoted, so YAML reads it as text: write it without quotes"
    mantissa, exp = f"{number:.15e}".split("e")
    scientific = f"{float(mantissa)!r}e{int(exp):+d}"  # repr: the shortest digits, always with a dot
    positional = format(decimal.Decimal(repr(number)), "f")
    return (f"; YAML reads {value} as text (a number needs a dot and a signed exponent): "
            f"write {scientific} or {positional}")


def validate(config: dict, schema: dict | None = None, positions: dict | None = None,
             files=()) -> list[str]:
    """Check ``config`` against the schema, filling in defaults (in place).

    Returns the dotted keys whose values came from a schema default. Raises
    :class:`ConfigFileError` with one short message for the first problem."""
    import jsonschema

    if schema is None:
        with open(schema_path()) as fh:
            schema = yaml.safe_load(fh)
    filled: list = []
    validator = _validator_class(filled)(schema)
    errors = list(validator.iter_errors(config))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        # an unknown key is the likeliest cause of an anyOf/oneOf failure nearby: say so
        for err in [best] + list(best.context or []):
            if err.validator == "additionalProperties":
                best = err
                break
        raise ConfigFileError(_short_message(best, positions or {}, files))
    return _filled_paths(config, filled)


def _filled_paths(config, filled) -> list[str]:
    """Dotted paths of the filled-in values, in the config's own order (the validator
    visits some mappings in set order)."""
    order: dict = {}

    def walk(obj, path):
        if isinstance(obj, dict):
            for k, v in obj.items():
                order[(id(obj), k)] = (len(order), path + (k,))
                walk(v, path + (k,))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, path + (i,))

    walk(config, ())
    found = sorted({order[f] for f in filled if f in order})
    return [_dotted(path) for _, path in found]


@dataclass
class LoadedConfig:
    config: dict
    files: list[str]
    defaults: list[str] = field(default_factory=list)  # dotted keys filled from the schema
    positions: dict = field(default_factory=dict)


def load_config(files, overrides: dict | None = None, schema: dict | None = None) -> LoadedConfig:
    """Read the config files (merged in order, as Snakemake does), apply ``--config``
    overrides, validate against the schema with defaults, run the semantic checks."""
    files = [str(f) for f in files]
    positions: dict = {}
    config: dict = {}
    for f in files:
        merge(config, load_yaml(f, positions))
    if overrides:
        merge(config, dict(overrides))

        def mark(obj, path):  # values given with --config are reported as such
            for key, value in obj.items():
                positions[path + (key,)] = ("--config", None)
                if isinstance(value, dict):
                    mark(value, path + (key,))

        mark(dict(overrides), ())
    defaults = validate(config, schema, positions, files)
    try:
        check_config(config)
    except ConfigError as err:
        raise ConfigFileError(f"{', '.join(files)}: {err}") from None
    return LoadedConfig(config, files, defaults, positions)


def configfiles_of(workflow) -> list[str]:
    """The config files of this Snakemake run: the command-line ones if any were given
    (``--configfile``), otherwise ``config/config.yaml`` (relative to the working
    directory, else to the Snakefile's directory)."""
    given = [str(p) for p in (workflow.overwrite_configfiles or [])]
    if given:
        return given
    for root in (Path.cwd(), Path(workflow.basedir)):
        path = root / DEFAULT_CONFIG
        if path.is_file():
            return [str(path)]
    raise ConfigFileError(f"no config: pass --configfile FILE.yaml, or put the default at {DEFAULT_CONFIG}")


def workflow_config(workflow, config: dict) -> LoadedConfig:
    """Replace Snakemake's ``config`` (in place) by the checked config of this run; the
    whole run is described by the command-line config files when any are given."""
    files = configfiles_of(workflow)
    with open(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml") as fh:
        schema = yaml.safe_load(fh)
    loaded = load_config(files, overrides=dict(workflow.config_settings.config or {}), schema=schema)
    config.clear()
    config.update(loaded.config)
    for f in files:
        if f not in [str(c) for c in workflow.configfiles]:
            workflow.configfiles.append(f)  # shown in the report like a configfile: directive's
    return loaded
