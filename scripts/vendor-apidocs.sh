#!/usr/bin/env bash
# Refreshes the API documentation pages' assets (src/commdesk_billing/apidocs_assets/) from
# the npm registry: Swagger UI's prebuilt `swagger-ui-dist` and ReDoc's standalone bundle,
# at the versions pinned below. The files are committed, so neither the image build, CI nor
# a developer needs the registry or a CDN; run this only to move to new versions, then look
# at /docs and /redoc (tests/security/test_apidocs_browser.py) and commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
SWAGGER_UI=swagger-ui-dist@5.36.0
REDOC=redoc@2.5.4
dest=src/commdesk_billing/apidocs_assets
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$SWAGGER_UI" "$REDOC" >/dev/null)
mkdir -p "$work/swagger" "$work/redoc"
tar xzf "$work"/swagger-ui-dist-*.tgz -C "$work/swagger"
tar xzf "$work"/redoc-*.tgz -C "$work/redoc"
s="$work/swagger/package"
r="$work/redoc/package"
cp "$s/swagger-ui-bundle.js" "$s/swagger-ui.css" "$s/favicon-32x32.png" "$dest/"
cp "$s/LICENSE" "$dest/swagger-ui.LICENSE"
cp "$s/NOTICE" "$dest/swagger-ui.NOTICE"
cp "$s/swagger-ui-bundle.js.LICENSE.txt" "$dest/swagger-ui-bundle.js.LICENSE.txt"
cp "$r/bundles/redoc.standalone.js" "$dest/"
cp "$r/LICENSE" "$dest/redoc.LICENSE"
cp "$r/bundles/redoc.standalone.js.LICENSE.txt" "$dest/redoc.standalone.js.LICENSE.txt"
# The source map comments would make a browser's developer tools ask for files we do not ship.
sed -i -e '/^\/\/# sourceMappingURL=/d' "$dest/swagger-ui-bundle.js" "$dest/redoc.standalone.js"
sed -i -e 's#/\*\# sourceMappingURL=[^*]*\*/##' "$dest/swagger-ui.css"
# ReDoc's sidebar shows its maker's logo from their CDN, with no option to turn it off: point
# it at an empty data: URL instead (the image then fails, and ReDoc hides it), so the page
# asks no other host for anything.
logo='src:"https://cdn.redoc.ly/redoc/logo-mini.svg"'
grep -qF "$logo" "$dest/redoc.standalone.js" || { echo "ReDoc's logo URL moved: check the bundle" >&2; exit 1; }
sed -i -e "s#$logo#src:\"data:,\"#" "$dest/redoc.standalone.js"
{
  echo "$SWAGGER_UI"
  echo "$REDOC"
} >"$dest/VERSIONS"
(cd "$dest" && sha256sum swagger-ui-bundle.js swagger-ui.css redoc.standalone.js favicon-32x32.png >SHA256SUMS)
echo "assets in $dest: $(cat "$dest/VERSIONS" | tr '\n' ' ')"
