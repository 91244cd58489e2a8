"""Checks that infra/terraform/README.md documents exactly the module's inputs and outputs.

terraform-docs would generate the tables, but the module proxy refuses it, so
the tables are written by hand and this check keeps them honest: every
`variable` in variables.tf has a row under "## Inputs", every `output` in the
module's .tf files a row under "## Outputs", and no row names anything else.
A row may name several outputs in its first cell (`a`, `b`).

Usage: python3 infra/test/readme_tables.py [MODULE_DIR]   (default infra/terraform)
"""

import pathlib
import re
import sys


def declared(module, kind):
    names = set()
    for tf in sorted(module.glob("*.tf")):
        names.update(re.findall(r'^%s "([A-Za-z0-9_-]+)"' % kind, tf.read_text(), re.M))
    return names


def documented(readme, heading):
    m = re.search(r"^## %s\n(.*?)(?=^## |\Z)" % re.escape(heading), readme, re.M | re.S)
    if not m:
        return None
    names = set()
    for line in m.group(1).splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        names.update(re.findall(r"`([A-Za-z0-9_-]+)`", first))
    return names


def main():
    module = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "infra/terraform")
    readme = (module / "README.md").read_text()
    failed = False
    for heading, kind in (("Inputs", "variable"), ("Outputs", "output")):
        want = declared(module, kind)
        got = documented(readme, heading)
        if got is None:
            print(f"README.md has no '## {heading}' section")
            failed = True
            continue
        for name in sorted(want - got):
            print(f"README.md '## {heading}' lacks `{name}` ({kind} in {module})")
            failed = True
        for name in sorted(got - want):
            print(f"README.md '## {heading}' documents `{name}`, which is no {kind} of {module}")
            failed = True
        if not (want - got or got - want):
            print(f"README.md '## {heading}': {len(want)} {kind}s, all documented")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
