<?php
// Router for PHP's built-in server (`php -S HOST:PORT -t SITE_ROOT router.php`) serving one WordPress
// site whose code is Debian's /usr/share/wordpress, linked into SITE_ROOT.
//
// Why a router: Debian's wp-config.php picks its configuration from /etc/wordpress by host name,
// which cannot tell two sites on 127.0.0.1 apart and would mean writing to /etc. Defining ABSPATH
// here makes every wp-load.php (including the symlinked one in wp-admin/) read SITE_ROOT/wp-config.php.
// It also gives pretty permalinks (/wp-json/...) the front controller Apache's rewrite rules would.

$root = rtrim($_SERVER['DOCUMENT_ROOT'], '/');
define('ABSPATH', $root . '/');

$path = rawurldecode(parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?? '/');
$file = $root . $path;

if ($path !== '/' && is_file($file) && !str_contains($path, '..')) {
    if (!str_ends_with($file, '.php')) {
        return false; // a static file (an upload, a script or style of wp-includes): served as is
    }
    $_SERVER['SCRIPT_NAME'] = $path;
    $_SERVER['PHP_SELF'] = $path;
    $_SERVER['SCRIPT_FILENAME'] = $file;
    chdir(dirname($file));
    require $file;
    return true;
}
if ($path !== '/' && is_dir($file) && is_file($file . '/index.php')) {
    $_SERVER['SCRIPT_NAME'] = rtrim($path, '/') . '/index.php';
    $_SERVER['PHP_SELF'] = $_SERVER['SCRIPT_NAME'];
    chdir($file);
    require $file . '/index.php';
    return true;
}
$_SERVER['SCRIPT_NAME'] = '/index.php';
$_SERVER['PHP_SELF'] = '/index.php';
$_SERVER['SCRIPT_FILENAME'] = $root . '/index.php';
chdir($root);
require $root . '/index.php';
return true;
