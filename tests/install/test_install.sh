#!/usr/bin/env bash
# The install test (ctest label "install"): `cmake --install` of a build tree into a fresh
# prefix puts hcgw and hcgw-sim in bin, the man page in share/man/man8, the configuration in
# etc/hcgw and the systemd unit in lib/systemd/system (its ExecStart pointed at that bin);
# the installed binary runs and accepts the installed configuration; installing again keeps
# an edited configuration; the man page renders without a warning, carries the version of the
# binary and documents every option of `hcgw --help`; and, when cpack and dpkg-deb are there,
# the Debian package holds the same files under /usr and /etc, with the conffile, the unit
# pointing at /usr/bin, and the runtime libraries in Depends.
#   test_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "$1")
src=$(realpath "$2")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log"

for f in bin/hcgw bin/hcgw-sim; do
  if [[ -x $prefix/$f && -f $prefix/$f ]]; then ok "$f"; else fail "$f is not an installed executable"; fi
done
for f in share/man/man8/hcgw.8 etc/hcgw/hcgw.conf lib/systemd/system/hcgw.service; do
  if [[ -f $prefix/$f ]]; then ok "$f"; else fail "$f was not installed"; fi
done
if [[ -f $prefix/etc/hcgw/hcgw.conf ]] && cmp -s "$prefix/etc/hcgw/hcgw.conf" "$src/conf/hcgw.conf"; then
  ok "etc/hcgw/hcgw.conf is conf/hcgw.conf"
else
  fail "etc/hcgw/hcgw.conf differs from conf/hcgw.conf"
fi

unit=$prefix/lib/systemd/system/hcgw.service
if grep -qx "ExecStart=$prefix/bin/hcgw -c $prefix/etc/hcgw/hcgw.conf" "$unit"; then
  ok "the unit starts the installed hcgw with the installed configuration"
else
  fail "the unit's ExecStart: $(grep '^ExecStart=' "$unit" || echo none)"
fi
if grep -q '/usr/local/bin' "$unit"; then fail "the unit still names /usr/local/bin"; fi

# The installed binary runs, and its configuration passes its own check.
version_line=$("$prefix/bin/hcgw" --version | head -1)
if [[ $version_line =~ ^hcgw\ ([0-9][^ ]*)\ \(commit ]]; then
  version=${BASH_REMATCH[1]}
  ok "$version_line"
else
  fail "hcgw --version: $version_line"
  version=unknown
fi
if out=$(HCGW_API_KEY=install-test-key "$prefix/bin/hcgw" --check-config -c "$prefix/etc/hcgw/hcgw.conf" 2>&1) &&
   [[ $out == "configuration OK" ]]; then
  ok "the installed configuration checks OK"
else
  fail "hcgw --check-config on the installed configuration: $out"
fi

# Installing again keeps an administrator's edits.
echo "# edited by the administrator" >>"$prefix/etc/hcgw/hcgw.conf"
cmake --install "$build" --prefix "$prefix" >"$tmp/install2.log"
if grep -q "edited by the administrator" "$prefix/etc/hcgw/hcgw.conf"; then
  ok "a second install keeps the edited configuration"
else
  fail "a second install overwrote etc/hcgw/hcgw.conf"
fi

# The man page: no warning from groff, found by man, the binary's version, every option.
man8=$prefix/share/man/man8/hcgw.8
warnings=$(groff -man -ww -z "$man8" 2>&1 || true)
if [[ -z $warnings ]]; then ok "groff -man -ww: no warning"; else fail "groff warns: $warnings"; fi
if found=$(MANPATH=$prefix/share/man man -w hcgw 2>/dev/null) && [[ $found == "$man8" ]]; then
  ok "man finds hcgw(8) under the prefix"
else
  fail "man -w hcgw with MANPATH=$prefix/share/man: ${found:-nothing}"
fi
if grep -q "^\.TH HCGW 8 [^ ]* \"hcgw $version\"" "$man8"; then
  ok "the man page is of hcgw $version"
else
  fail "the man page's .TH does not say hcgw $version: $(grep '^\.TH' "$man8")"
fi
help=$("$prefix/bin/hcgw" --help)
for opt in $(grep -o -- '--[a-z][a-z-]*' <<<"$help" | sort -u); do
  roff=${opt//-/\\-}
  if grep -qF -- "$roff" "$man8"; then ok "the man page documents $opt"; else fail "hcgw --help has $opt, the man page does not"; fi
done
for cmd in "token new" "token hash"; do
  if grep -qF "$cmd" <<<"$help"; then
    if grep -qF "$cmd" "$man8"; then ok "the man page documents hcgw $cmd"; else fail "the man page lacks hcgw $cmd"; fi
  fi
done

# The Debian package.
if command -v cpack >/dev/null && command -v dpkg-deb >/dev/null && [[ -f $build/CPackConfig.cmake ]]; then
  (cd "$tmp" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/deb" >"$tmp/cpack.log" 2>&1) ||
    { cat "$tmp/cpack.log" >&2; fail "cpack -G DEB failed"; }
  deb=$(ls "$tmp"/deb/hcgw_*.deb 2>/dev/null | head -1 || true)
  if [[ -n $deb ]]; then
    ok "cpack made $(basename "$deb")"
    contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
    for f in ./usr/bin/hcgw ./usr/bin/hcgw-sim ./usr/share/man/man8/hcgw.8 ./etc/hcgw/hcgw.conf \
             ./usr/lib/systemd/system/hcgw.service; do
      if grep -qx -- "$f" <<<"$contents"; then ok "the package has $f"; else fail "the package lacks $f"; fi
    done
    [[ $(dpkg-deb -f "$deb" Package) == hcgw ]] || fail "the package is not named hcgw"
    depends=$(dpkg-deb -f "$deb" Depends)
    for lib in libmicrohttpd libcurl libjson-c libconfig ca-certificates; do
      if grep -q "$lib" <<<"$depends"; then ok "Depends names $lib"; else fail "Depends lacks $lib: $depends"; fi
    done
    mkdir -p "$tmp/ctl"
    dpkg-deb -e "$deb" "$tmp/ctl"
    if grep -qx /etc/hcgw/hcgw.conf "$tmp/ctl/conffiles" 2>/dev/null; then
      ok "/etc/hcgw/hcgw.conf is a conffile"
    else
      fail "/etc/hcgw/hcgw.conf is not a conffile"
    fi
    # Read whole before grep -q looks: grep leaving early would end tar with SIGPIPE, a failed
    # pipeline under pipefail (seen on Debian 13).
    packaged_unit=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/lib/systemd/system/hcgw.service)
    if grep -qx "ExecStart=/usr/bin/hcgw -c /etc/hcgw/hcgw.conf" <<<"$packaged_unit"; then
      ok "the packaged unit starts /usr/bin/hcgw with /etc/hcgw/hcgw.conf"
    else
      fail "the packaged unit's ExecStart"
    fi
  else
    fail "cpack made no .deb"
  fi
else
  echo "skipped: the Debian package (cpack or dpkg-deb missing)"
fi

if ((failures > 0)); then
  echo "$failures install check(s) failed" >&2
  exit 1
fi
echo "all install checks passed"
