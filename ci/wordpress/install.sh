#!/usr/bin/env bash
# Installs what the WordPress clone tests need, from Debian's packages only: WordPress itself, the
# PHP CLI (its built-in server serves the sites) and MariaDB (the tests start their own instance).
# Idempotent and fast when everything is present: it only asks apt when a command or file is missing.
set -euo pipefail

# Each entry: a path that proves the package is installed, and the package that provides it.
required=(
  "/usr/share/wordpress/wp-load.php wordpress"
  "/usr/bin/php php-cli"
  # php needs one SAPI besides the CLI; the CGI one starts no service (fpm and mod_php would).
  "/usr/bin/php-cgi php-cgi"
  "/usr/share/php/getid3/getid3.php php-getid3"
  "/usr/sbin/mariadbd mariadb-server"
  "/usr/bin/mariadb-install-db mariadb-server"
  "/usr/bin/mariadb mariadb-client"
)
# PHP extensions WordPress uses here: mysqli (database), gd (image sizes), mbstring/xml (content),
# curl (HTTP API). Checked by asking PHP, so a half-configured install is noticed too.
extensions=(mysqli gd mbstring xml curl)

missing=()
for entry in "${required[@]}"; do
  read -r path package <<<"$entry"
  [[ -e $path ]] || missing+=("$package")
done
if command -v php >/dev/null; then
  loaded=$(php -m)
  for ext in "${extensions[@]}"; do
    grep -qix "$ext" <<<"$loaded" || missing+=("php-$ext")
  done
else
  for ext in "${extensions[@]}"; do missing+=("php-$ext"); done
fi
# mysqli comes from php-mysql.
missing=("${missing[@]/php-mysqli/php-mysql}")

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [[ $(id -u) -ne 0 ]]; then
  echo "ci/wordpress/install.sh: missing ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "[wordpress] installing ${missing[*]} from Debian" >&2
apt-get update -qq
# --no-install-recommends: no theme packages, no system MariaDB beyond the binaries we start ourselves.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
