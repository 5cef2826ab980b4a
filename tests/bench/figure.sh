# Sourced by the benchmark scripts.
# figure NAME OTAD BASELINE RATIO BAR: one row of make bench's table
# (BENCH_TABLE), printed here too
figure() {
	printf '%-52s %14s %14s %8s  %s\n' "$1" "$2" "$3" "$4" "$5"
	[ -z "${BENCH_TABLE:-}" ] ||
		printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$5" >> "$BENCH_TABLE"
}

