#!/usr/bin/env bash
# The demo's JavaScript dependencies, at the versions pinned in deploy/demo/package-lock.json:
# `npm ci` into deploy/demo/node_modules (the page's Centrifugo client `centrifuge`, and
# `playwright-core` for the browser tests; no browser is downloaded), then the client's ESM
# build is copied to cmd/demo/web/vendor/centrifuge.js, which the demo binary embeds.
#
#   deploy/demo/npm.sh            install (skipped when node_modules matches the lock file)
#   deploy/demo/npm.sh chromium   also install Debian's chromium for the browser tests, if missing
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENDOR="$ROOT/cmd/demo/web/vendor/centrifuge.js"

log() { echo "npm.sh: $*" >&2; }

command -v npm >/dev/null || { log "node and npm are needed for the demo page; install Debian's nodejs and npm packages"; exit 1; }

stamp="$HERE/node_modules/.lock-sha256"
want="$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  log "npm ci (deploy/demo/package-lock.json)"
  # --ignore-scripts: nothing here needs an install script, and none may download a browser.
  (cd "$HERE" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
fi
src="$HERE/node_modules/centrifuge/build/index.mjs"
if ! cmp -s "$src" "$VENDOR"; then
  cp "$src" "$VENDOR"
  log "copied centrifuge $(node -p "require('$HERE/node_modules/centrifuge/package.json').version") to ${VENDOR#"$ROOT"/}"
fi

if [[ "${1:-}" == chromium && ! -x /usr/bin/chromium ]]; then
  sudo=""
  [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  log "installing Debian's chromium package (for the browser tests)"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq chromium >/dev/null 2>&1 || { $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null; }
fi
