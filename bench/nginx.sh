#!/usr/bin/env bash
# Makes sure nginx (Debian's package) is installed, for wsgate-serve-bench's
# proxy comparison, and prints its path. The bench runs it itself, as a
# child in the foreground with its own configuration in a scratch directory
# (never the system's service). Installing needs root or sudo; without
# either the script says so and fails.
set -euo pipefail

if path=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null); then
	echo "$path"
	exit 0
fi

sudo=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null; then
		sudo="sudo"
	else
		echo "bench/nginx.sh: nginx is not installed and this is not root (apt-get install nginx)" >&2
		exit 1
	fi
fi
echo "bench/nginx.sh: installing nginx with apt-get" >&2
# Debian's postinst starts the system's nginx service (port 80) unless
# /usr/sbin/policy-rc.d forbids it (containers usually have one that does);
# the bench does not use that service either way.
install() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx >&2; }
install || { $sudo apt-get update >&2 && install; }
command -v nginx || echo /usr/sbin/nginx
