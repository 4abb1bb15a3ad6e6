#!/usr/bin/env bash
# The browser tests drive Debian's chromium (/usr/bin/chromium) with Playwright.
# Install it when it is missing, so the README's test command passes on a fresh machine.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: the browser tests need Chromium at /usr/bin/chromium; install your system's chromium package" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
echo "installing Debian's chromium for the browser tests (once)…"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
