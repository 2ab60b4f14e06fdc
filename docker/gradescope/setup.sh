#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu base image,
# network on). It installs the grader exactly as the Docker images do (same constraints file,
# same pip command) and bubblewrap for the sandbox. The assignment's data files travel in the
# zip (data/, named in grader-data.env), so that grading needs no network.
#
# The autograder zip (`grader gradescope ASSIGNMENT --out ZIP` makes it) holds this file and
# run_autograder at its root, beside the course files: Gradescope unpacks it to
# /autograder/source. Run from a checkout (docker/gradescope/setup.sh) it uses that checkout.
#
# Environment (all optional): GRADER_VENV (default /opt/grader-venv), KERAS_HOME (default
# /opt/keras).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -f "$here/pyproject.toml" ]; then
    source_dir="$here"                    # the unpacked autograder zip
elif [ -f "$here/../../pyproject.toml" ]; then
    source_dir="$(cd "$here/../.." && pwd)" # a checkout
else
    echo "setup.sh: no pyproject.toml beside this script or two folders up" >&2
    exit 1
fi
GRADER_VENV="${GRADER_VENV:-/opt/grader-venv}"
KERAS_HOME="${KERAS_HOME:-/opt/keras}"
export KERAS_HOME

# The grader needs Python 3.11 or newer (what the constraints were tested with: 3.11).
ok() { command -v "$1" >/dev/null 2>&1 && "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; }
python=""
for candidate in python3.11 python3.12 python3.13 python3; do
    if ok "$candidate"; then
        python="$candidate"
        break
    fi
done
export DEBIAN_FRONTEND=noninteractive
apt-get update
if [ -z "$python" ]; then # Ubuntu 22.04's python3 is 3.10
    apt-get install -y --no-install-recommends python3.11 python3.11-venv
    python=python3.11
fi
version="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
apt-get install -y --no-install-recommends bubblewrap util-linux
# Ubuntu's python3.X needs python3.X-venv for `-m venv`; a Python not from apt has venv built in.
apt-get install -y --no-install-recommends "python$version-venv" || true
rm -rf /var/lib/apt/lists/*

"$python" -m venv "$GRADER_VENV"
# The install command (the Docker images and tests/test_docker.py run the same one).
cd "$source_dir"
"$GRADER_VENV/bin/python" -m pip install --constraint docker/constraints.txt ./

mkdir -p "$KERAS_HOME/datasets"
# The data files the zip carries, as run_autograder will name them.
if [ -f "$source_dir/grader-data.env" ]; then
    while IFS='=' read -r variable relative; do
        [ -n "$variable" ] && export "$variable=$source_dir/$relative"
    done <"$source_dir/grader-data.env"
fi

# The sandbox runs student code as uid 65534: the hidden suites and the data (test labels
# grade the models) stay readable by root only. Only in Gradescope's layout: never on a checkout.
if [ "$source_dir" = /autograder/source ]; then
    chmod -R go-rwx /autograder/source "$KERAS_HOME"
    export GRADER_COURSE_ROOT=/autograder/source
fi

# The check run_autograder relies on.
GRADER_COURSE_ROOT="${GRADER_COURSE_ROOT:-$source_dir}" "$GRADER_VENV/bin/grader" doctor
