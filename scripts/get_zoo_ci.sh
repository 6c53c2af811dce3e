#!/usr/bin/env bash
# Fetch the MONAI model zoo's own CI scripts and metadata schema, at pinned commits, into the folder the tests look in.
#
#   bash scripts/get_zoo_ci.sh [DIR]         download into DIR (default: ${XDG_CACHE_HOME:-~/.cache}/semcl/zoo-ci)
#   bash scripts/get_zoo_ci.sh --check DIR   only verify DIR against scripts/zoo_ci.sha256 (no network)
#   bash scripts/get_zoo_ci.sh --list        print "<path> <url>" for every file it would download (no network)
#
# scripts/zoo_ci.sha256 lists every file with its SHA-256 (the bytes of ../shared/zoo-ci, see its SOURCE.md). The
# files are downloaded with curl into a temporary folder beside DIR, every hash is checked with sha256sum, and only
# then is the folder renamed to DIR, so DIR is never half-filled. Nothing of the model zoo is copied into this
# repository; the tests (tests/conftest.py) run the files from DIR.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MANIFEST="$HERE/zoo_ci.sha256"
ZOO_COMMIT="dfae206df112837d817e78d3727c9f32b3b52e82"
ZOO_RAW="https://raw.githubusercontent.com/Project-MONAI/model-zoo/$ZOO_COMMIT"
# the URL the bundle's metadata.json names in "schema"
SCHEMA_URL="https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
# the Apache-2.0 license of project-monai.github.io, where the schema is published
SCHEMA_LICENSE_URL="https://raw.githubusercontent.com/Project-MONAI/project-monai.github.io/26078b630a28867722a5913cfcc1cd2b18fa1d9c/LICENSE"
DEFAULT_DEST="${XDG_CACHE_HOME:-$HOME/.cache}/semcl/zoo-ci"

die() {
    echo "get_zoo_ci.sh: error: $*" >&2
    exit 1
}

usage() {
    sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

url_for() {
    # the download URL of one manifest path
    case "$1" in
        schema/meta_schema_20240725.json) echo "$SCHEMA_URL" ;;
        schema/LICENSE) echo "$SCHEMA_LICENSE_URL" ;;
        schema/*) die "no download URL known for $1 (scripts/zoo_ci.sha256)" ;;
        *) echo "$ZOO_RAW/$1" ;;
    esac
}

manifest_paths() {
    # sha256sum format: "<hash>  <path>"
    sed -E 's/^[0-9a-f]{64}  //' "$MANIFEST"
}

check() {
    # verify folder $1 against the manifest; sha256sum names each file that differs ("FAILED") or is missing
    local dir="$1"
    [[ -d "$dir" ]] || die "$dir is not a folder"
    if ! (cd "$dir" && sha256sum --check --strict --quiet "$MANIFEST"); then
        die "$dir does not match $MANIFEST: the files named above are missing or differ from the pinned ones"
    fi
}

fetch() {
    local dest="$1" parent tmp path url old
    command -v curl >/dev/null || die "curl is needed to download the model zoo's CI"
    command -v sha256sum >/dev/null || die "sha256sum is needed to verify the downloads"
    parent="$(dirname "$dest")"
    mkdir -p "$parent"
    tmp="$(mktemp -d "$parent/.zoo-ci.partial.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: remove this temporary folder whatever happens
    trap "rm -rf '$tmp'" EXIT
    while IFS= read -r path; do
        url="$(url_for "$path")"
        mkdir -p "$tmp/$(dirname "$path")"
        echo "downloading $path"
        curl --fail --silent --show-error --location --retry 3 --output "$tmp/$path" "$url" \
            || die "could not download $path from $url"
    done < <(manifest_paths)
    if ! (cd "$tmp" && sha256sum --check --strict --quiet "$MANIFEST"); then
        die "the download of the file(s) named above does not match $MANIFEST; nothing was written to $dest"
    fi
    if [[ -e "$dest" ]]; then
        old="$(mktemp -d "$parent/.zoo-ci.old.XXXXXX")"
        mv "$dest" "$old/zoo-ci"
        mv "$tmp" "$dest"
        rm -rf "$old"
    else
        mv "$tmp" "$dest"
    fi
}

[[ -f "$MANIFEST" ]] || die "the manifest $MANIFEST is missing"

case "${1:-}" in
    -h | --help)
        usage
        ;;
    --check)
        [[ $# -eq 2 ]] || die "usage: bash scripts/get_zoo_ci.sh --check DIR"
        check "$2"
        echo "$2 matches $MANIFEST ($(manifest_paths | wc -l) files)"
        ;;
    --list)
        manifest_paths | while IFS= read -r path; do
            url="$(url_for "$path")"
            echo "$path $url"
        done
        ;;
    -*)
        die "unknown option $1 (see --help)"
        ;;
    *)
        [[ $# -le 1 ]] || die "usage: bash scripts/get_zoo_ci.sh [DIR]"
        dest="${1:-$DEFAULT_DEST}"
        if [[ -d "$dest" ]] && (cd "$dest" && sha256sum --check --strict --quiet "$MANIFEST" >/dev/null 2>&1); then
            echo "$dest already holds the model zoo's CI at $ZOO_COMMIT; nothing downloaded"
        else
            fetch "$dest"
            echo "the model zoo's CI ($ZOO_COMMIT) and its metadata schema are in $dest"
        fi
        if [[ -z "${1:-}" ]]; then
            echo "the tests find it there (unless SEMCL_ZOO_CI is set or ../shared/zoo-ci exists)"
        else
            echo "for the tests: export SEMCL_ZOO_CI=$(cd "$dest" && pwd)"
        fi
        ;;
esac
