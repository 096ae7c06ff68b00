#!/usr/bin/env bash
# Opens a memory report page in headless Chromium, offline, and fails when:
#   - the page references an http(s) resource (the SVG namespace name aside);
#   - the page writes anything to the console: it writes nothing itself, so any message is an
#     uncaught exception, a failed load or another error (all are logged alike, as CONSOLE);
#   - a section id is missing from the DOM once the page's script has run;
#   - the page has a flame graph but its script drew no frame of it;
#   - sorting a table, hovering, finding, zooming into and out of a flame graph frame, or picking
#     another snapshot does not work (a script added to a copy of the page does them, see below).
# Then saves a screenshot of the page.
#
#   tests/browser/check_report.sh <report.html> <screenshot.png> [section id...]
#
# The ids default to the memory profiler's page. The browser is chromium-headless-shell or
# chromium (Debian's packages), whichever is installed; each run is limited by `timeout`.
set -euo pipefail

if (($# < 2)); then
  echo "usage: $0 <report.html> <screenshot.png> [section id...]" >&2
  exit 2
fi
page=$(realpath "$1")
screenshot=$(realpath -m "$2")
shift 2
ids=("$@")
((${#ids[@]})) || ids=(summary timeline top-sites growth leaks cycles suggestions flamegraph
                       flamegraph-diff)

browser=
for candidate in chromium-headless-shell chromium; do
  if command -v "$candidate" >/dev/null; then
    browser=$candidate
    break
  fi
done
if [[ -z $browser ]]; then
  echo "check_report: no chromium-headless-shell or chromium (apt-get install chromium-headless-shell)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
  echo "check_report: $page: $*" >&2
  failures=$((failures + 1))
}

if grep -Eo 'https?://[^"'"'"' )<>]*' "$page" | grep -v '^http://www\.w3\.org/2000/svg$' >"$work/urls"; then
  fail "references outside the page: $(sort -u "$work/urls" | head -5 | tr '\n' ' ')"
fi

# --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start. Every host name
# resolves to nothing: a page that tried to load anything would log the failure.
flags=(--headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$work/profile"
       --host-resolver-rules="MAP * ~NOTFOUND" --hide-scrollbars --window-size=1280,3000)
# A copy of the page with a script that uses it as a reader would, once the page's own script
# has run: sorts a table; on each flame graph hovers a frame (a tooltip with sizes must show),
# searches for its name (matching frames are outlined), clicks it (the breadcrumb must offer
# the way back) and clicks the root in the breadcrumb; picks another snapshot. It writes what it found into the DOM, as <pre id="interaction-check">.
cat >"$work/interact.js" <<'EOF'
<script>
(function () {
  var out = [];
  function check(ok, what) { out.push((ok ? 'ok ' : 'FAIL ') + what); }
  try {
    var th = document.querySelector('table.sortable th');
    if (th) {
      th.click();
      check(th.getAttribute('aria-sort') !== null, 'a table sorts by a clicked header');
    }
    ['flame', 'diff'].forEach(function (prefix) {
      var view = document.getElementById(prefix + '-view');
      if (!view) return;
      var bars = view.querySelectorAll('.fb');
      check(bars.length > 0, prefix + ': frames drawn');
      if (!bars.length) return;
      var bar = bars[Math.min(bars.length - 1, 2)];
      var box = bar.getBoundingClientRect();
      bar.dispatchEvent(new MouseEvent('mousemove',
          {bubbles: true, clientX: box.left + 2, clientY: box.top + 2}));
      var tip = document.getElementById('flame-tip');
      check(!tip.hidden && /allocations/.test(tip.textContent), prefix + ': hover shows sizes');
      bar.dispatchEvent(new MouseEvent('click', {bubbles: true}));
      var find = document.getElementById(prefix + '-find');
      var text = bar.textContent.trim().split(' ')[0];
      if (find && text) {
        find.value = text.slice(0, 8);
        find.dispatchEvent(new Event('input'));
        check(view.querySelector('.fb.hit') !== null &&
              document.getElementById(prefix + '-found').textContent !== '',
              prefix + ': find outlines the matching frames');
        find.value = '';
        find.dispatchEvent(new Event('input'));
      }
      var crumbs = document.getElementById(prefix + '-crumbs');
      var root = crumbs.querySelector('a');
      check(root !== null, prefix + ': a click zooms in');
      if (root) {
        root.click();
        check(crumbs.querySelector('a') === null, prefix + ': the root zooms out');
      }
    });
    var pick = document.getElementById('flame-snapshot');
    if (pick && pick.options.length > 1) {
      pick.selectedIndex = (pick.selectedIndex + 1) % pick.options.length;
      pick.dispatchEvent(new Event('change'));
      check(document.querySelectorAll('#flame-view .fb').length > 0,
            'another snapshot is drawn');
    }
  } catch (e) {
    out.push('FAIL ' + e);
  }
  var pre = document.createElement('pre');
  pre.id = 'interaction-check';
  pre.textContent = out.join('\n');
  document.body.appendChild(pre);
})();
</script>
EOF
# The script goes before the page's last </body>.
awk -v script="$work/interact.js" '
  { lines[NR] = $0 }
  /<\/body>/ { last = NR }
  END {
    for (i = 1; i <= NR; i++) {
      if (i == last) { while ((getline line < script) > 0) print line }
      print lines[i]
    }
  }' "$page" >"$work/interactive.html"

url="file://$page"
if ! timeout 90 "$browser" "${flags[@]}" --enable-logging=stderr --v=0 --dump-dom \
    "file://$work/interactive.html" \
    >"$work/dom.html" 2>"$work/log"; then
  cat "$work/log" >&2
  fail "$browser failed or timed out loading the page"
fi
if grep -E ':CONSOLE|Uncaught' "$work/log" >"$work/console"; then
  fail "console messages:"
  cat "$work/console" >&2
fi
for id in "${ids[@]}"; do
  grep -q "id=\"$id\"" "$work/dom.html" || fail "no element with id \"$id\" in the DOM"
done
if grep -q 'id="flame-view"' "$work/dom.html" && ! grep -q 'class="fb' "$work/dom.html"; then
  fail "the flame graph has no frame drawn"
fi
sed -n '/<pre id="interaction-check">/,/<\/pre>/p' "$work/dom.html" >"$work/interaction"
if ! grep -q 'ok ' "$work/interaction"; then
  fail "the interaction script did not run"
elif grep -q 'FAIL' "$work/interaction"; then
  fail "interactions failed:"
  grep 'FAIL' "$work/interaction" >&2
fi

if ! timeout 90 "$browser" "${flags[@]}" --screenshot="$screenshot" "$url" >"$work/shot.log" 2>&1 ||
   [[ ! -s $screenshot ]]; then
  cat "$work/shot.log" >&2
  fail "no screenshot"
fi

if ((failures)); then
  echo "check_report: $failures check(s) failed" >&2
  exit 1
fi
echo "check_report: $page: no console message, ${#ids[@]} sections," \
  "$(grep -c 'ok ' "$work/interaction") interactions work; screenshot $screenshot"
