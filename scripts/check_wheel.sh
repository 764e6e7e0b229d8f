#!/usr/bin/env bash
# A regular (non-editable) install works: build the wheel, check it carries every config, install
# it into a fresh venv and run samt-run from a folder outside the checkout.
# The fresh venv reuses the project venv's third-party packages (torch alone is 5.5 GB) through a
# .pth line; samt itself comes only from the wheel, which the script verifies.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$REPO/.venv/bin/python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PY" -m pip wheel --no-deps --quiet "$REPO" -w "$WORK/dist"
rm -rf "$REPO/build"
WHEEL="$(ls "$WORK"/dist/samt-*.whl)"
echo "wheel: $(basename "$WHEEL")"
"$PY" - "$WHEEL" "$REPO/conf" <<'PYEOF'
import sys, zipfile
from pathlib import Path
wheel, conf = sys.argv[1], Path(sys.argv[2])
inside = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".yaml")}
wanted = {f"samt/conf/{p.relative_to(conf).as_posix()}" for p in conf.rglob("*.yaml")}
missing = sorted(wanted - inside)
if missing:
    sys.exit(f"the wheel lacks {len(missing)} config file(s) of conf/: {missing[:5]} "
             "(add the folder to [tool.setuptools] packages in pyproject.toml)")
print(f"the wheel carries all {len(wanted)} yaml files of conf/")
PYEOF

"$PY" -m venv "$WORK/venv"
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
NEW_SITE="$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$SITE" > "$NEW_SITE/zz_project_deps.pth"
"$WORK/venv/bin/python" -m pip install --quiet --no-deps --no-index "$WHEEL"

mkdir -p "$WORK/elsewhere"
cd "$WORK/elsewhere"
where="$("$WORK/venv/bin/python" -c 'import samt, samt.cli; print(samt.__file__, samt.cli.CONF_DIR)')"
echo "imported: $where"
case "$where" in
  "$NEW_SITE"/samt/*" $NEW_SITE/samt/conf") ;;
  *) echo "samt was not imported from the wheel's install ($NEW_SITE)" >&2; exit 1 ;;
esac
"$WORK/venv/bin/samt-run" --help > help.txt  # a file, not a pipe: head would close it early
head -3 help.txt
"$WORK/venv/bin/samt-reproduce" --help > reproduce_help.txt && head -1 reproduce_help.txt
env -u SAMT_DATA_ROOT "$WORK/venv/bin/samt-run" dataset=digits epochs=1 progress=false \
  device=cpu hydra.run.dir=run
"$WORK/venv/bin/python" - <<'PYEOF'
import json
summary = json.load(open("run/summary.json"))
assert summary["status"] == "completed", summary
print(f"wheel install: one-epoch digits run completed, test accuracy "
      f"{summary['final']['test_metric']:.2f} %, files: {sorted(p for p in __import__('os').listdir('run'))}")
PYEOF
# The job-list sweeper (each stage of a reproduced table) is found from here too.
printf -- "- [seed=0, hydra.sweep.subdir=a]\n" > jobs.yaml
env -u SAMT_DATA_ROOT "$WORK/venv/bin/samt-run" -m hydra/sweeper=job_list hydra.sweeper.jobs=jobs.yaml \
  hydra.sweep.dir=sweep dataset=digits epochs=1 progress=false device=cpu > sweep.txt 2>&1 \
  || { tail -20 sweep.txt; exit 1; }
test -f sweep/a/summary.json && echo "wheel install: a job-list sweep ran from $PWD"
