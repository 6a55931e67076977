"""Two real WordPress sites on loopback for the clone tests: one MariaDB, two databases, two PHP servers.

Everything comes from Debian's packages (`ci/wordpress/install.sh`): WordPress's code is used in
place from /usr/share/wordpress, linked into one directory per site that holds only what differs
(wp-config.php, wp-content with the uploads). MariaDB runs as a normal process with its own datadir
and a unix socket (no TCP port); each site is served by PHP's built-in server on a free port.

Cache: a MariaDB datadir fresh from `mariadb-install-db` is kept under WP_FIXTURE_CACHE (default
~/.cache/wp-k8s-service/wordpress), keyed by the MariaDB version, and copied instead of initialising
a new one. Sites are always installed and seeded for real (a few seconds): their URLs contain the
ports, which change from run to run.

Used by tests/clone and tests/observability, and by hand: `python -m wp_devsupport.wordpress.sites up`
starts both sites, prints their URLs and credentials as JSON and runs until interrupted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..repo import REPO

#: The PHP helpers (package data next to this module).
HERE = Path(__file__).resolve().parent
#: Installs WordPress, PHP and MariaDB from Debian when missing (a services installer, kept in ci/).
INSTALL_SH = REPO / "ci" / "wordpress" / "install.sh"
WORDPRESS_DIR = Path("/usr/share/wordpress")
# Entries of the Debian tree a site gets its own copy of instead of a link.
OWN_ENTRIES = {"wp-config.php", "wp-content"}


def log(message: str) -> None:
    print(f"[wordpress] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(what: str, check: Any, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with status {process.returncode}")
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not ready after {timeout} s")


def _cache_dir() -> Path:
    base = os.environ.get("WP_FIXTURE_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "wp-k8s-service" / "wordpress"


class MariaDB:
    """A private MariaDB server: own datadir, unix socket only, stopped with `stop()`."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.datadir = base / "data"
        self.socket = base / "mysqld.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._init_datadir()
        command = [
            "/usr/sbin/mariadbd",
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--pid-file={self.base / 'mysqld.pid'}",
            f"--log-error={self.base / 'mysqld.err'}",
            "--skip-networking",
            "--skip-log-bin",
            # Small and fast: this instance holds two test sites and is thrown away.
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=2",
            "--skip-innodb-doublewrite",
        ]
        if os.geteuid() == 0:
            command.append("--user=root")  # mariadbd refuses to run as root without being told
        # What mariadbd says before it opens its error log (e.g. the open-files warning) goes next to it.
        with (self.base / "mysqld.out").open("wb") as output:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        wait_until("MariaDB", self._answers, 60, self.process)

    def _init_datadir(self) -> None:
        version = subprocess.run(["/usr/sbin/mariadbd", "--version"], capture_output=True, text=True, check=True).stdout
        key = hashlib.sha256(version.encode()).hexdigest()[:16]
        cached = _cache_dir() / f"datadir-{key}"
        if not cached.is_dir():
            log("initialising a MariaDB datadir (cached for next time)")
            staging = Path(tempfile.mkdtemp(prefix="datadir-", dir=_ensure(_cache_dir())))
            command = [
                "/usr/bin/mariadb-install-db",
                "--no-defaults",
                f"--datadir={staging}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]
            if os.geteuid() == 0:
                command.append("--user=root")
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            with contextlib.suppress(FileExistsError, OSError):
                staging.rename(cached)  # atomic: a concurrent run either wins or uses the winner's
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(cached, self.datadir, symlinks=True)

    def _answers(self) -> bool:
        return self.socket.exists() and self.sql("SELECT 1", check=False).returncode == 0

    def sql(self, statements: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/usr/bin/mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "--batch"],
            input=statements,
            capture_output=True,
            text=True,
            check=check,
        )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _php_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class Site:
    """One WordPress site: its directory, database, URL and administrator credentials."""

    name: str
    root: Path
    port: int
    database: str
    db: MariaDB
    username: str = ""
    application_password: str = ""
    seed: dict[str, Any] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def uploads(self) -> Path:
        return self.root / "wp-content" / "uploads"

    def create(self, role: str) -> None:
        _ensure(self.root)
        for entry in WORDPRESS_DIR.iterdir():
            if entry.name not in OWN_ENTRIES:
                (self.root / entry.name).symlink_to(entry)
        for sub in ("plugins", "themes", "uploads"):
            _ensure(self.root / "wp-content" / sub)
        password = hashlib.sha256(os.urandom(16)).hexdigest()[:24]
        self.db.sql(
            f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4;\n"
            f"CREATE USER '{self.database}'@'localhost' IDENTIFIED BY '{password}';\n"
            f"GRANT ALL ON `{self.database}`.* TO '{self.database}'@'localhost';\n"
        )
        salts = "\n".join(
            f"define('{name}', '{hashlib.sha256(os.urandom(32)).hexdigest()}');"
            for name in (
                "AUTH_KEY",
                "SECURE_AUTH_KEY",
                "LOGGED_IN_KEY",
                "NONCE_KEY",
                "AUTH_SALT",
                "SECURE_AUTH_SALT",
                "LOGGED_IN_SALT",
                "NONCE_SALT",
            )
        )
        (self.root / "site.json").write_text(json.dumps({"url": self.url}))
        (self.root / "wp-config.php").write_text(
            f"""<?php
// Written by wp_devsupport/wordpress/sites.py for the clone tests.
define('DB_NAME', {_php_string(self.database)});
define('DB_USER', {_php_string(self.database)});
define('DB_PASSWORD', {_php_string(password)});
define('DB_HOST', {_php_string("localhost:" + str(self.db.socket))});
define('DB_CHARSET', 'utf8mb4');
{salts}
$table_prefix = 'wp_';
define('WP_HOME', {_php_string(self.url)});
define('WP_SITEURL', {_php_string(self.url)});
define('WP_CONTENT_DIR', {_php_string(str(self.root / "wp-content"))});
define('WP_CONTENT_URL', {_php_string(self.url + "/wp-content")});
// Application Passwords need HTTPS or a 'local' environment (wp_is_application_passwords_supported).
define('WP_ENVIRONMENT_TYPE', 'local');
// No network: no update checks, no cron requests to itself, no mail.
define('WP_HTTP_BLOCK_EXTERNAL', true);
define('DISABLE_WP_CRON', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_DEBUG', false);
define('FS_METHOD', 'direct');
if (!defined('ABSPATH')) {{ define('ABSPATH', __DIR__ . '/'); }}
require_once ABSPATH . 'wp-settings.php';
"""
        )
        result = subprocess.run(
            ["php", str(HERE / "setup-site.php"), str(self.root), role],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"setting up {self.name} failed: {result.stderr.strip() or result.stdout}")
        self.seed = json.loads(result.stdout.strip().splitlines()[-1])
        self.username = self.seed.pop("username")
        self.application_password = self.seed.pop("application_password")

    def start(self) -> None:
        env = dict(os.environ)
        # Several workers so the worker's requests and the tests' own checks do not queue behind each other.
        env["PHP_CLI_SERVER_WORKERS"] = "4"
        log_file = (self.root.parent / f"{self.name}-php.log").open("wb")
        self.process = subprocess.Popen(
            [
                "php",
                "-d",
                "upload_max_filesize=64M",
                "-d",
                "post_max_size=64M",
                "-d",
                "memory_limit=256M",
                "-S",
                f"127.0.0.1:{self.port}",
                "-t",
                str(self.root),
                str(HERE / "router.php"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log_file.close()
        wait_until(f"WordPress {self.name}", self._answers, 30, self.process)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/wp-json/", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        # The built-in server's workers are its children: signal the whole session it leads.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    # Snapshots let each test start from the freshly seeded state in well under a second. The SQL is
    # built from this fixture's own database and table names (information_schema), not from input.
    def snapshot(self) -> None:
        tables = self._tables(self.database)
        snap = f"{self.database}_snapshot"
        statements = [f"DROP DATABASE IF EXISTS `{snap}`;", f"CREATE DATABASE `{snap}`;"]
        for table in tables:
            statements.append(f"CREATE TABLE `{snap}`.`{table}` LIKE `{self.database}`.`{table}`;")
            statements.append(f"INSERT INTO `{snap}`.`{table}` SELECT * FROM `{self.database}`.`{table}`;")  # noqa: S608
        self.db.sql("\n".join(statements))
        uploads_snapshot = self.root.parent / f"{self.name}-uploads-snapshot"
        shutil.rmtree(uploads_snapshot, ignore_errors=True)
        shutil.copytree(self.uploads, uploads_snapshot)

    def restore(self) -> None:
        snap = f"{self.database}_snapshot"
        statements = []
        for table in self._tables(snap):
            statements.append(f"DELETE FROM `{self.database}`.`{table}`;")  # noqa: S608
            statements.append(f"INSERT INTO `{self.database}`.`{table}` SELECT * FROM `{snap}`.`{table}`;")  # noqa: S608
        self.db.sql("SET FOREIGN_KEY_CHECKS=0;\n" + "\n".join(statements))
        shutil.rmtree(self.uploads, ignore_errors=True)
        shutil.copytree(self.root.parent / f"{self.name}-uploads-snapshot", self.uploads)

    def _tables(self, database: str) -> list[str]:
        query = f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{database}';"  # noqa: S608
        out = self.db.sql(query).stdout
        return [line for line in out.splitlines()[1:] if line]

    def query(self, sql: str) -> list[list[str]]:
        """Rows of a query against this site's database (tab-separated by the client)."""
        out = self.db.sql(f"USE `{self.database}`;\n{sql}").stdout
        return [line.split("\t") for line in out.splitlines()[1:]]


@dataclass
class Sites:
    base: Path
    db: MariaDB
    source: Site
    target: Site
    setup_seconds: float

    def stop(self) -> None:
        for site in (self.source, self.target):
            site.stop()
        self.db.stop()


@contextlib.contextmanager
def running_sites(base: Path | None = None) -> Iterator[Sites]:
    """Install (if needed), create, seed and serve both sites; stop everything on exit."""
    started = time.monotonic()
    subprocess.run([str(INSTALL_SH)], check=True)
    owned = base is None
    base = Path(tempfile.mkdtemp(prefix="wp-sites-")) if base is None else _ensure(base)
    db = MariaDB(base / "mariadb")
    _ensure(db.base)
    source = Site("source", base / "source", free_port(), "wp_source", db)
    target = Site("target", base / "target", free_port(), "wp_target", db)
    sites = Sites(base, db, source, target, 0.0)
    try:
        db.start()
        for site, role in ((source, "source"), (target, "target")):
            site.create(role)
            site.start()
        target.snapshot()
        sites.setup_seconds = time.monotonic() - started
        log(f"two sites ready in {sites.setup_seconds:.1f} s: {source.url} {target.url}")
        yield sites
    finally:
        sites.stop()
        if owned:
            shutil.rmtree(base, ignore_errors=True)


def clone_env(sites: Sites, **overrides: str) -> dict[str, str]:
    """The worker environment the clone needs for the two loopback sites."""
    source, target = sites.source, sites.target
    env = {
        "CLONE_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CLONE_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        "CLONE_HTTP_TIMEOUT": "20",
        "CLONE_HTTP_RETRIES": "2",
        "CLONE_HTTP_BACKOFF": "0.05",
        f"WORDPRESS_AUTH_127_0_0_1_{source.port}": f"{source.username}:{source.application_password}",
        f"WORDPRESS_AUTH_127_0_0_1_{target.port}": f"{target.username}:{target.application_password}",
    }
    env.update(overrides)
    return env


def main() -> None:
    if sys.argv[1:] != ["up"]:
        print("usage: python -m wp_devsupport.wordpress.sites up", file=sys.stderr)
        sys.exit(2)
    # SIGTERM (e.g. from `timeout`) must unwind like Ctrl-C, or the servers outlive this process.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    with running_sites() as sites:
        print(
            json.dumps(
                {
                    site.name: {
                        "url": site.url,
                        "username": site.username,
                        "application_password": site.application_password,
                        "root": str(site.root),
                    }
                    for site in (sites.source, sites.target)
                },
                indent=2,
            ),
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
