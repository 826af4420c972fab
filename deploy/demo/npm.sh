#!/usr/bin/env bash
# The demo's JavaScript, at the versions pinned in the lock files: the page's package
# @pgoutbox/models (client/models: `npm ci` there, built with tsc) and the centrifuge it pins are
# copied into cmd/demo/web/vendor/ (models/*.js and centrifuge.js), which the demo binary embeds
# and the page's import map loads; `npm ci` into deploy/demo/node_modules brings `playwright-core`
# for the browser tests (no browser is downloaded).
#
#   deploy/demo/npm.sh            install and build (each step skipped when already up to date)
#   deploy/demo/npm.sh chromium   also install Debian's chromium for the browser tests, if missing
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
MODELS="$ROOT/client/models"
VENDOR="$ROOT/cmd/demo/web/vendor"

log() { echo "npm.sh: $*" >&2; }

command -v npm >/dev/null || { log "node and npm are needed for the demo page; install Debian's nodejs and npm packages"; exit 1; }

# Tests call this in parallel (every test that needs node): one at a time. After it returns,
# client/models/node_modules and dist/ are complete and stay as they are.
exec 9>"$HERE/.npm.lock"
flock 9

# npm_ci DIR: `npm ci` in DIR unless its node_modules was installed from the same lock file.
# --ignore-scripts: nothing here needs an install script, and none may download a browser.
npm_ci() {
  local stamp="$1/node_modules/.lock-sha256" want
  want="$(sha256sum "$1/package-lock.json" | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    log "npm ci (${1#"$ROOT"/}/package-lock.json)"
    (cd "$1" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
}

npm_ci "$HERE"
npm_ci "$MODELS"
# Build only when the sources changed: tests read dist/ while other tests call this script.
built="$MODELS/node_modules/.dist-sha256"
want="$(cat "$MODELS/tsconfig.json" "$MODELS/package-lock.json" "$MODELS"/src/*.ts | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$MODELS/dist/index.js" || ! -f "$built" || "$(cat "$built")" != "$want" ]]; then
  log "tsc (client/models)"
  (cd "$MODELS" && npm run --silent build)
  echo "$want" >"$built"
fi

# copy SRC DST: only when it changed (the embed, and so the demo binary, stays the same).
copy() { cmp -s "$1" "$2" || cp "$1" "$2"; }
mkdir -p "$VENDOR/models"
for f in "$MODELS"/dist/*.js; do copy "$f" "$VENDOR/models/$(basename "$f")"; done
for f in "$VENDOR"/models/*.js; do [[ -f "$MODELS/dist/$(basename "$f")" ]] || rm -f "$f"; done
copy "$MODELS/node_modules/centrifuge/build/index.mjs" "$VENDOR/centrifuge.js"

if [[ "${1:-}" == chromium && ! -x /usr/bin/chromium ]]; then
  sudo=""
  [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  log "installing Debian's chromium package (for the browser tests)"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq chromium >/dev/null 2>&1 || { $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null; }
fi
