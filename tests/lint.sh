#!/usr/bin/env bash
# make lint: banned functions, then cppcheck where it is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
# unbounded or unchecked: use snprintf, strtoull with checks, memcpy with sizes
banned='\b(atoi|atol|atoll|sprintf|vsprintf|strcpy|strcat|strncat|strtok|gets)\s*\('
if grep -nE "$banned" src/*.c src/registry/*.c include/*.h; then
	echo "lint: banned function (see STYLE in README)"
	status=1
fi
if command -v cppcheck >/dev/null; then
	cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability \
		--inline-suppr -Iinclude -D_GNU_SOURCE src/ || status=1
fi
[ $status = 0 ] && echo "lint: clean"
exit $status
