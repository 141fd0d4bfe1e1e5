#!/usr/bin/env bash
# Fetch the real-photo object assets without root: Debian packages via `apt-get download` + `dpkg-deb -x`.
#
#   scripts/get_object_assets.sh [DIR]        (default: ${R2O_CACHE_DIR:-~/.cache/r2o}/assets)
#
# Objects:     tuxpaint-stamps-default (GPL-2): PNG cut-outs with alpha, by category folder
#              -> DIR/tuxpaint-stamps-default/usr/share/tuxpaint/stamps/
# Backgrounds: photographs only (abstract / rendered art of the same packages is not used; the file list is
#              r2o_pretrain.scenes.objects.BACKGROUND_PHOTOS):
#                mate-backgrounds (GPL-2+ / CC-BY-SA-4.0)     usr/share/backgrounds/mate/nature/*.jpg (12 photos)
#                plasma-workspace-wallpapers (GPL-2+ etc.)    11 photo wallpapers (BytheWater, ColdRipple, ...)
#                lomiri-wallpapers-16.04 (CC-BY / CC-BY-SA)   12 photos (the two bird photos and the pattern are left out)
# Idempotent: a package already unpacked (marker DIR/<pkg>/.unpacked) is skipped; .deb files are kept in
# DIR/debs/ so a rerun unpacks without downloading. Exit 0 when every package is there, 1 otherwise
# (the message says what is missing and what to do).
set -euo pipefail

DIR="${1:-${R2O_CACHE_DIR:-$HOME/.cache/r2o}/assets}"
PACKAGES=(tuxpaint-stamps-default mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers-16.04)

for tool in apt-get dpkg-deb; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: '$tool' not found: this script needs a Debian/Ubuntu system (apt + dpkg)." >&2
    echo "       Elsewhere, fetch the .deb files of ${PACKAGES[*]} from https://packages.debian.org" >&2
    echo "       (bookworm), put them in $DIR/debs/ and rerun on a machine with dpkg-deb." >&2
    exit 1
  fi
done

mkdir -p "$DIR/debs"
missing=()
for pkg in "${PACKAGES[@]}"; do
  if [[ -f "$DIR/$pkg/.unpacked" ]]; then
    echo "ok        $pkg (already in $DIR/$pkg)"
    continue
  fi
  deb=$(ls "$DIR/debs/${pkg}"_*.deb 2>/dev/null | head -n1 || true)
  if [[ -z "$deb" ]]; then
    echo "download  $pkg"
    # apt-get download needs no root; it writes into the current folder. Its log goes to a file so that a
    # failure can be explained.
    if ! (cd "$DIR/debs" && apt-get download "$pkg" >"$DIR/debs/$pkg.log" 2>&1); then
      log=$(tail -n 3 "$DIR/debs/$pkg.log")
      if grep -qiE "unable to locate|has no installation candidate|no packages found" "$DIR/debs/$pkg.log"; then
        why="apt does not know '$pkg': the package lists are missing or stale. Run 'sudo apt-get update'"
        why+=" (needs root; or ask an administrator), check that /etc/apt/sources.list(.d) has Debian 'main'"
        why+=" (bookworm or later), then rerun this script."
      elif grep -qiE "could not resolve|failed to fetch|temporary failure|connection" "$DIR/debs/$pkg.log"; then
        why="the download failed (no network to the Debian mirror?). Rerun when the mirror can be reached,"
        why+=" or copy ${pkg}_*.deb into $DIR/debs/ by hand."
      else
        why="apt-get download failed"
      fi
      echo "MISSING   $pkg: $why" >&2
      echo "          apt-get said: $log" >&2
      missing+=("$pkg")
      continue
    fi
    deb=$(ls "$DIR/debs/${pkg}"_*.deb | head -n1)
  fi
  echo "unpack    $deb"
  rm -rf "$DIR/$pkg.tmp"
  dpkg-deb -x "$deb" "$DIR/$pkg.tmp"
  rm -rf "$DIR/$pkg"
  mv "$DIR/$pkg.tmp" "$DIR/$pkg"
  touch "$DIR/$pkg/.unpacked"
done

if ((${#missing[@]})); then
  echo "error: missing in $DIR: ${missing[*]} (see above); nothing else to do until they are there." >&2
  exit 1
fi
echo "assets ready in $DIR"
echo "next: python tools/make_objects_data.py /work/data_objects --assets $DIR"
