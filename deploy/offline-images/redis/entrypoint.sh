#!/bin/sh
# The official image builds redis-server with protected mode off; Debian's has it
# on, so it is turned off on the command line (before the caller's options, which
# may turn it on again; after a config file, which must come first).
set -e
if [ "$1" = redis-server ]; then
    shift
    if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
        config="$1"; shift
        set -- redis-server "$config" --protected-mode no "$@"
    else
        set -- redis-server --protected-mode no "$@"
    fi
fi
exec "$@"
