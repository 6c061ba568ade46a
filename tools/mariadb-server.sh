# shellcheck shell=sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A private MariaDB server for the client test (tests/mariadb.sh) and the
# client benchmark (tools/bench-clients.sh), which source this file: its
# datadir, socket and logs in one directory, no TCP, InnoDB on native AIO
# through libaio (so on the library when it runs under aio-compat-run),
# O_DIRECT, and a buffer pool small enough that InnoDB reads and writes its
# files all the time. It never reads the system's option files.
#
#   mariadb_find            sets $mariadbd, $mariadb, $mariadb_admin and
#                           $mariadb_install_db; fails, with what is missing
#                           in $mariadb_missing
#   mariadb_install DIR     a new datadir in DIR/data
#   mariadb_start DIR [PREFIX...]
#                           mariadbd on DIR/data under PREFIX (a launcher,
#                           strace, ...), in the background; returns once it
#                           answers (0) or has died or not answered within
#                           $mariadb_limit seconds (1). Sets $mariadb_job.
#   mariadb_sql DIR SQL     runs SQL, prints the rows tab-separated
#   mariadb_stop DIR        a clean shutdown; returns the server's exit status
#   mariadb_crash DIR       kill -9 of the server; waits for it
#   mariadb_kill            kills the server started last, if it still runs
#
# mariadb_limit (seconds, default 300) bounds each server's whole life: a
# server still running then is killed, so a hang ends as a failure.

mariadb_limit=${mariadb_limit:-300}
mariadb_job=

# The settings of issue 13: 10.11 prefers its own io_uring unless told
# innodb_linux_aio=aio. InnoDB's I/O as the server and mariabackup do it.
mariadb_aio_options() {
	echo --innodb-use-native-aio=1 --innodb-linux-aio=aio --innodb-flush-method=O_DIRECT
}

# 6 MiB is the least buffer pool 16 KiB pages allow. No dump or load of
# the pool, so that a restart reads what it needs.
mariadb_options() {
	[ "$(id -u)" != 0 ] || echo --user=root
	echo --datadir="$1/data" --socket="$1/sock" --pid-file="$1/pid" \
		--log-error="$1/err.log" --tmpdir="$1" --skip-networking \
		"$(mariadb_aio_options)" --innodb-buffer-pool-size=8M \
		--innodb-buffer-pool-dump-at-shutdown=0 \
		--innodb-buffer-pool-load-at-startup=0
}

mariadb_find() {
	mariadbd=$(PATH=$PATH:/usr/sbin:/usr/local/sbin command -v mariadbd ||
		PATH=$PATH:/usr/sbin:/usr/local/sbin command -v mysqld)
	mariadb=$(command -v mariadb || command -v mysql)
	mariadb_admin=$(command -v mariadb-admin || command -v mysqladmin)
	mariadb_install_db=$(command -v mariadb-install-db || command -v mysql_install_db)
	for m_v in mariadbd mariadb mariadb_admin mariadb_install_db; do
		eval "[ -n \"\$$m_v\" ]" || {
			# shellcheck disable=SC2034 # for the scripts that source this
			mariadb_missing="$m_v (package mariadb-server) is not installed"
			return 1
		}
	done
}

mariadb_install() {
	# shellcheck disable=SC2046 # one option, or none
	"$mariadb_install_db" --no-defaults $([ "$(id -u)" != 0 ] || echo --user=root) \
		--datadir="$1/data" --auth-root-authentication-method=normal \
		--skip-test-db >"$1/install.log" 2>&1
}

mariadb_alive() {
	"$mariadb_admin" --no-defaults --socket="$1/sock" --user=root \
		--connect-timeout=2 ping >/dev/null 2>&1
}

mariadb_start() {
	m_dir=$1
	shift
	rm -f "$m_dir/pid"
	# shellcheck disable=SC2046 # one word per option
	timeout -s KILL "$mariadb_limit" "$@" "$mariadbd" --no-defaults \
		$(mariadb_options "$m_dir") >>"$m_dir/stderr.log" 2>&1 &
	mariadb_job=$!
	m_waited=0
	until mariadb_alive "$m_dir"; do
		if ! kill -0 "$mariadb_job" 2>/dev/null ||
			[ "$m_waited" -ge $((mariadb_limit * 5)) ]; then
			mariadb_kill
			return 1
		fi
		sleep 0.2
		m_waited=$((m_waited + 1))
	done
}

mariadb_sql() {
	timeout -s KILL "$mariadb_limit" "$mariadb" --no-defaults --socket="$1/sock" \
		--user=root --batch --skip-column-names -e "$2"
}

mariadb_stop() {
	timeout -s KILL "$mariadb_limit" "$mariadb_admin" --no-defaults \
		--socket="$1/sock" --user=root shutdown >/dev/null 2>&1
	wait "$mariadb_job"
	m_status=$?
	mariadb_job=
	return $m_status
}

mariadb_crash() {
	kill -KILL "$(cat "$1/pid")"
	wait "$mariadb_job" 2>/dev/null	# the shell's "Killed"
	mariadb_job=
}

# timeout leads a process group of its own: the server, and strace or the
# launcher before it, are in it and nothing else.
mariadb_kill() {
	[ -n "$mariadb_job" ] || return 0
	kill -KILL -- "-$mariadb_job" 2>/dev/null
	wait "$mariadb_job" 2>/dev/null
	mariadb_job=
}
