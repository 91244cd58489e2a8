#!/usr/bin/env bash
# Checks packaging/systemd/pullthrough.service with systemd's own parser:
#   - `systemd-analyze verify` must print nothing (it exits 0 on an unknown
#     or misspelled directive and only warns, so any output fails here);
#   - `systemd-analyze security --offline=yes --threshold=20` must score the
#     unit's exposure at 2.0 or less ("OK"; the scale is 0-10, the
#     threshold 0-100: systemd-analyze(1)).
# ExecStart is pointed at an executable that exists on this machine, as
# verify checks that it does; nothing else in the unit is changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v systemd-analyze >/dev/null || { echo "verify.sh: systemd-analyze is missing (Debian package systemd; make tools installs it)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s#^ExecStart=/usr/local/bin/pullthrough#ExecStart=$(command -v true)#" "$here/pullthrough.service" >"$tmp/pullthrough.service"
grep -q "^ExecStart=$(command -v true)\$" "$tmp/pullthrough.service" || { echo "verify.sh: ExecStart is not /usr/local/bin/pullthrough" >&2; exit 1; }
out=$(systemd-analyze verify "$tmp/pullthrough.service" 2>&1) || { echo "$out" >&2; exit 1; }
if [[ -n $out ]]; then
	echo "verify.sh: systemd-analyze verify complained:" >&2
	echo "$out" >&2
	exit 1
fi
score=$(systemd-analyze security --offline=yes --threshold=20 "$tmp/pullthrough.service" 2>&1) || {
	echo "$score" | grep -E '✗|Overall' >&2
	echo "verify.sh: exposure above 2.0" >&2
	exit 1
}
echo "verify.sh: pullthrough.service parses cleanly; $(echo "$score" | grep -o 'Overall exposure level.*')"
