"""``config/README.md``: every key of the workflow config, generated from the JSON schema's
``description``s (``workflow/schemas/config.schema.yaml``), so the reference cannot drift
from what the config check accepts::

    python -m singledir.pipeline.config_docs            # writes config/README.md
    python -m singledir.pipeline.config_docs --check    # exit 1 if config/README.md is out of date

One section per mapping of the config, in the order the schema gives them, each a table of
its keys with type, default and description. A ``$ref`` to a definition that an earlier
section documents links to that section instead of repeating it; a mapping whose keys are
all the same definition (``families``) documents it once, as ``families.<family>``.

Pure Python and PyYAML only: no torch, no Snakemake, so it runs before anything is installed
but the YAML reader.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

SCHEMA = "workflow/schemas/config.schema.yaml"
OUTPUT = "config/README.md"
# An experiment's train section has the keys of the family's (the schema builds both from one
# YAML anchor); only the family's carries defaults. Documented once, with the defaults.
SAME_KEYS_AS = {"#/$defs/train": "#/$defs/family_train"}
# Placeholders for names the user chooses: additionalProperties sections and shared definitions.
NAME_PLACEHOLDERS = {"#/$defs/family": "<family>", "#/$defs/experiment": "<name>"}
ROOT = "(top level)"


def load_schema(path: str | Path = SCHEMA) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _resolve(schema: dict, node: dict) -> tuple[dict, str | None]:
    """``node`` with its ``$ref`` followed (the node's own keys win) and the reference, if any."""
    ref = node.get("$ref")
    if not ref:
        return node, None
    target = schema
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return merged, ref


def _text(value) -> str:
    """One line of markdown table cell."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _bound(node: dict) -> str:
    marks = (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"))
    return ", ".join(f"{sign} {node[key]}" for key, sign in marks if key in node)


def type_text(schema: dict, node: dict) -> str:
    """A short human reading of a property's type: enum values, bounds, list items."""
    node, _ = _resolve(schema, node)
    if "enum" in node:
        return " or ".join(f"`{json.dumps(v) if not isinstance(v, str) else v}`" for v in node["enum"])
    if "oneOf" in node:
        return " or ".join(type_text(schema, alt) for alt in node["oneOf"])
    kind = node.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(type_text(schema, {**node, "type": k}) for k in kind)
    if kind == "array":
        return f"list of {type_text(schema, node.get('items', {}))}"
    if kind == "object":
        values = node.get("additionalProperties")
        return f"mapping of names to {type_text(schema, values)}" if isinstance(values, dict) else "mapping"
    bound = _bound(node)
    return f"{kind} {bound}" if bound else kind


def _default_text(node: dict) -> str:
    if "default" not in node:
        return ""
    value = node["default"]
    return f"`{value if isinstance(value, str) else json.dumps(value)}`"


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _heading(path: str) -> str:
    return f"## `{path}`" if path != ROOT else "## Top level"


def _link(path: str) -> str:
    return f"[`{path}`](#{slug(_heading(path)[3:])})" if path != ROOT else "[top level](#top-level)"


def _is_mapping(node: dict) -> bool:
    """A mapping with keys of its own to document (one section); other mappings are one row."""
    return "properties" in node or isinstance(node.get("additionalProperties"), dict) and "properties" in node[
        "additionalProperties"] or "$ref" in node.get("additionalProperties", {})


def sections(schema: dict) -> list[tuple[str, str, list[tuple[str, str, str, str]]]]:
    """(path, description, rows) per mapping of the config, depth first in schema order; a row is
    (key, type, default, description)."""
    out: list = []
    documented: dict[str, str] = {}  # $ref -> the path of the section that documents it

    def visit(node: dict, path: str, ref: str | None) -> None:
        description = node.get("description", "")
        if ref:
            documented[ref] = path
            # a section says what the definition is; the row that links to it says what the key is
            description = _resolve(schema, {"$ref": ref})[0].get("description", description)
        rows: list = []
        out.append((path, description, rows))
        children: list = []
        props = node.get("properties", {})
        refs = {p.get("$ref") for p in props.values()}
        shared = len(props) > 1 and len(refs) == 1 and None not in refs  # every key the same definition
        for key, raw in props.items():
            sub, sub_ref = _resolve(schema, raw)
            described = sub_ref and SAME_KEYS_AS.get(sub_ref, sub_ref)
            child = f"{path}.{key}" if path != ROOT else key
            if shared:
                child = f"{path}.{NAME_PLACEHOLDERS.get(sub_ref, '<name>')}"
            kind, default = type_text(schema, raw), _default_text(sub)
            if _is_mapping(sub):
                if described in documented:
                    kind = f"mapping: the keys of {_link(documented[described])}"
                else:
                    kind = f"mapping: {_link(child)}"
                    if not (shared and children):
                        children.append((sub, child, sub_ref))
            rows.append((key, kind, default, sub.get("description", "")))
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            sub, sub_ref = _resolve(schema, extra)
            if _is_mapping(sub):
                child = f"{path}.{NAME_PLACEHOLDERS.get(sub_ref, '<name>')}"
                rows.append((child.rsplit(".", 1)[-1], f"mapping: {_link(child)}", "",
                             sub.get("description", "")))
                children.append((sub, child, sub_ref))
        for sub, child, sub_ref in children:
            visit(sub, child, sub_ref)

    visit(schema, ROOT, None)
    return out


def render(schema: dict) -> str:
    """The text of config/README.md for ``schema``."""
    lines = ["# Config keys", "",
             f"<!-- Generated by `python -m singledir.pipeline.config_docs` from {SCHEMA}; do not edit. -->", "",
             _text(schema.get("description", "")), "",
             "Every key of a config, by section; a dotted path such as `families.<family>.train` names where "
             "a section sits (`<family>` is `mnist`, `cifar10` or `imagenet`; `<name>` an experiment's name). "
             "A key left out takes its default; keys without a default are unset unless a config sets them. "
             "The four configs in this folder (`config.yaml`: the paper, `small.yaml`, `laptop.yaml`, `demo.yaml`) say why "
             "they set what they set; how to write your own: "
             "[docs/scales.md](../docs/scales.md#writing-your-own-config).", ""]
    for path, description, rows in sections(schema):
        lines += [_heading(path), ""]
        if description and path != ROOT:
            lines += [_text(description), ""]
        lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
        lines += [f"| `{key}` | {kind} | {default} | {_text(desc)} |" for key, kind, default, desc in rows]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0].strip("`"))
    ap.add_argument("--schema", default=SCHEMA)
    ap.add_argument("--output", default=OUTPUT)
    ap.add_argument("--check", action="store_true", help="exit 1 if the output is not up to date; write nothing")
    args = ap.parse_args(argv)
    text = render(load_schema(args.schema))
    out = Path(args.output)
    old = out.read_text() if out.is_file() else None
    if args.check:
        if old != text:
            print(f"{out} is out of date with {args.schema}: run python -m singledir.pipeline.config_docs",
                  file=sys.stderr)
            return 1
        return 0
    if old != text:
        out.write_text(text)
    print(f"{out}: {'written' if old != text else 'already up to date'} from {args.schema}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
