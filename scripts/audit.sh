#!/usr/bin/env bash
# `make audit`: pip-audit over the pinned requirements.txt (CI runs it after `make test`).
#
#   exit 0  no known vulnerability (or only ones listed in audit-allowlist.txt, each with a reason)
#   exit 1  a known vulnerability that is not listed: upgrade it, or list it with a reason
#   exit 2  audit-allowlist.txt names a vulnerability without a reason
#   exit 3  the vulnerability service could not be asked (no network to it) and AUDIT_REQUIRED=1
#
# When the service cannot be reached the audit has NOT been done: this says so on a line of its
# own ("audit: NOT DONE ...") and exits 3 when AUDIT_REQUIRED=1 (CI with network), 0 otherwise —
# never "no known vulnerabilities" for packages nobody looked at. AUDIT_SERVICE=pypi|osv.
set -uo pipefail
cd "$(dirname "$0")/.."
ALLOWLIST=audit-allowlist.txt
args=()
while read -r id reason; do
  [[ -z "${id}" || "${id}" == \#* ]] && continue
  if [[ -z "${reason}" ]]; then
    echo "audit: ${ALLOWLIST} lists ${id} without a reason" >&2
    exit 2
  fi
  args+=(--ignore-vuln "${id}")
done < "${ALLOWLIST}"

out=$(.venv/bin/pip-audit -r requirements.txt --no-deps --disable-pip --strict \
  --progress-spinner off --vulnerability-service "${AUDIT_SERVICE:-pypi}" "${args[@]}" 2>&1)
status=$?
echo "${out}" | grep -v "encouraged to fully hash\|Consider using a tool like"
packages=$(grep -cE '^[A-Za-z0-9]' requirements.txt)
if [[ ${status} -eq 0 ]]; then
  echo "audit: no known vulnerability in the ${packages} pinned packages (${#args[@]} allow-listed args)"
  exit 0
fi
if grep -qE "could not be audited|ConnectionError|Max retries exceeded|Failed to resolve" <<<"${out}" \
  && ! grep -qE "Found [0-9]+ known vulnerabilit" <<<"${out}"; then
  echo "audit: NOT DONE — the vulnerability service (${AUDIT_SERVICE:-pypi}) could not be reached"
  echo "audit: from this machine; no package was checked. Run \`make audit\` where it can be."
  exit $([[ "${AUDIT_REQUIRED:-0}" == 1 ]] && echo 3 || echo 0)
fi
echo "audit: known vulnerabilities above: upgrade (make requirements) or list them in ${ALLOWLIST}"
exit 1
