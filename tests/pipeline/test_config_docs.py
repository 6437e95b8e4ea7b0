"""config/README.md is generated from the config schema's descriptions and kept in step with it."""
import subprocess
import sys

from conftest import REPO
from singledir.pipeline import config_docs as CD

SCHEMA = CD.load_schema(REPO / CD.SCHEMA)


def _properties(node, path=""):
    """(dotted path, property schema) of every property anywhere in the schema, $defs included."""
    if isinstance(node, dict):
        for key, sub in node.get("properties", {}).items():
            yield f"{path}.{key}".lstrip("."), sub
        for key, sub in node.items():
            # "if" restates a property to test its value; it declares no key of its own
            if isinstance(sub, (dict, list)) and key != "if":
                yield from _properties(sub, f"{path}.{key}".lstrip("."))
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from _properties(sub, f"{path}[{i}]")


def test_committed_config_readme_is_what_the_generator_writes_now():
    assert (REPO / CD.OUTPUT).read_text() == CD.render(SCHEMA), \
        "config/README.md is out of date: run python -m singledir.pipeline.config_docs"


def test_every_schema_property_has_a_description_and_a_row():
    text = CD.render(SCHEMA)
    props = list(_properties(SCHEMA))
    assert len(props) > 100  # the walk reached every level of the schema
    undescribed = [path for path, sub in props if not CD._resolve(SCHEMA, sub)[0].get("description")]
    assert undescribed == []
    missing = sorted({path for path, _ in props if f"| `{path.rsplit('.', 1)[-1]}` |" not in text})
    assert missing == []


def test_sections_follow_the_config_and_link_shared_definitions_once():
    paths = [path for path, _, _ in CD.sections(SCHEMA)]
    assert paths[:3] == [CD.ROOT, "cost", "families"]
    assert "families.<family>" in paths and "families.mnist" not in paths
    assert "families.<family>.experiments.<name>.grid" in paths
    # the experiment's model and train sections have the family's keys: linked, not repeated
    assert "families.<family>.experiments.<name>.train" not in paths
    rows = dict((path, rows) for path, _, rows in CD.sections(SCHEMA))
    train_row = next(r for r in rows["families.<family>.experiments.<name>"] if r[0] == "train")
    assert train_row[1] == "mapping: the keys of [`families.<family>.train`](#familiesfamilytrain)"
    analysis = {r[0]: r for r in rows["families.<family>.analysis"]}
    assert analysis["orderings"][1:3] == ("integer ≥ 1", "`10`")
    assert analysis["method"][1] == "`auto` or `plan` or `generic` or `reference`"
    assert analysis["noise_layers"][1] == "`all` or integer ≤ -1 or list of string"


def test_cli_checks_and_writes_without_importing_torch_or_snakemake(tmp_path):
    out = tmp_path / "README.md"
    schema = str(REPO / CD.SCHEMA)
    assert CD.main(["--schema", schema, "--output", str(out), "--check"]) == 1
    assert CD.main(["--schema", schema, "--output", str(out)]) == 0
    assert out.read_text() == CD.render(SCHEMA)
    assert CD.main(["--schema", schema, "--output", str(out), "--check"]) == 0
    probe = ("import sys, singledir.pipeline.config_docs as m; m.render(m.load_schema(sys.argv[1])); "
             "print(sorted(k for k in ('torch', 'snakemake', 'pandas') if k in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe, schema], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
