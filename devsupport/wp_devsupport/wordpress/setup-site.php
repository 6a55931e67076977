<?php
// Installs one WordPress site (schema, administrator, Application Password) and seeds its content.
//
// Usage: php setup-site.php SITE_ROOT ROLE   (ROLE: source | target)
// Prints one JSON object: the administrator's user name and Application Password, and the ids of
// what was seeded, for the tests to compare against. Runs in the CLI, not through the web server,
// so it works before the server is up and leaves no request logs.
//
// Seed (source): categories News > Releases and Guides, tags, two PNG images made with GD (one
// attached to a post and used as its featured image, one attached to a page), a parent page and its
// child, published posts (one in block markup, one with an old date), a draft (visible only with
// credentials), and an author whose display name exists on the target too (author mapping).
// Content and excerpts link to the source URL and embed the images' source URLs, which is what the
// clone has to rewrite. The target gets only its administrator and the same author.

if ($argc !== 3 || !in_array($argv[2], ['source', 'target'], true)) {
    fwrite(STDERR, "usage: php setup-site.php SITE_ROOT source|target\n");
    exit(2);
}
$root = rtrim($argv[1], '/');
$role = $argv[2];

define('ABSPATH', $root . '/');
define('WP_INSTALLING', true);
$_SERVER['HTTP_HOST'] = parse_url(json_decode(file_get_contents($root . '/site.json'), true)['url'], PHP_URL_HOST);

// wp_install() mails the administrator; there is no mail here and nobody to read it.
function wp_new_blog_notification($blog_title, $blog_url, $user_id, $password) {}

require ABSPATH . 'wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
require_once ABSPATH . 'wp-admin/includes/file.php';
require_once ABSPATH . 'wp-admin/includes/media.php';
require_once ABSPATH . 'wp-admin/includes/image.php';

function fail(string $what): void {
    fwrite(STDERR, "setup-site.php: $what\n");
    exit(1);
}
function check($value, string $what) {
    if (is_wp_error($value)) {
        fail("$what: " . $value->get_error_message());
    }
    if (!$value) {
        fail("$what failed");
    }
    return $value;
}

$admin_password = wp_generate_password(24, false);
$result = wp_install($role === 'source' ? 'Clone Source' : 'Clone Target', 'admin', 'admin@example.test', false, '', $admin_password);
$admin_id = (int) $result['user_id'];
wp_update_user(['ID' => $admin_id, 'display_name' => ucfirst($role) . ' Admin']);
update_option('permalink_structure', '/%postname%/');
update_option('uploads_use_yearmonth_folders', 1);
flush_rewrite_rules(false);

// The defaults wp_install() creates (Hello world!, its comment, Sample Page, Privacy Policy draft)
// would make both sites start with the same slugs; the clone's conflict handling is tested on purpose.
foreach (get_posts(['post_type' => ['post', 'page'], 'post_status' => 'any', 'numberposts' => -1]) as $existing) {
    wp_delete_post($existing->ID, true);
}

$author_id = check(wp_insert_user([
    'user_login' => 'alice',
    'user_pass' => wp_generate_password(24),
    'user_email' => 'alice@example.test',
    'display_name' => 'Alice Writer',
    'role' => 'author',
]), 'create author');

[$app_password] = check(WP_Application_Passwords::create_new_application_password($admin_id, ['name' => 'clone-tests']), 'create application password');

$out = ['username' => 'admin', 'application_password' => $app_password, 'admin_id' => $admin_id, 'author_id' => $author_id];

if ($role === 'source') {
    $home = home_url();
    $make_term = fn(string $name, string $taxonomy, array $args = []) => check(wp_insert_term($name, $taxonomy, $args), "term $name")['term_id'];
    $news = $make_term('News', 'category', ['slug' => 'news', 'description' => 'Announcements']);
    $releases = $make_term('Releases', 'category', ['slug' => 'releases', 'parent' => $news]);
    $guides = $make_term('Guides', 'category', ['slug' => 'guides']);
    $tags = [];
    foreach (['WordPress' => 'wordpress', 'Kubernetes' => 'kubernetes', 'Cloning' => 'cloning'] as $name => $slug) {
        $tags[$slug] = $make_term($name, 'post_tag', ['slug' => $slug]);
    }

    $make_image = function (string $name, array $rgb, string $title, int $parent, string $alt) {
        $img = imagecreatetruecolor(640, 400);
        imagefill($img, 0, 0, imagecolorallocate($img, ...$rgb));
        imagestring($img, 5, 40, 40, $title, imagecolorallocate($img, 255, 255, 255));
        $tmp = wp_tempnam($name);
        imagepng($img, $tmp);
        $id = check(media_handle_sideload(['name' => $name, 'tmp_name' => $tmp], $parent, $title, ['post_excerpt' => "Caption of $title"]), "upload $name");
        update_post_meta($id, '_wp_attachment_image_alt', $alt);
        return $id;
    };
    $make_page = fn(array $args) => check(wp_insert_post($args + ['post_type' => 'page', 'post_status' => 'publish', 'post_author' => $admin_id], true), 'page ' . $args['post_name']);
    $make_post = fn(array $args) => check(wp_insert_post($args + ['post_type' => 'post', 'post_status' => 'publish', 'post_author' => $admin_id], true), 'post ' . $args['post_name']);

    $about = $make_page(['post_name' => 'about', 'post_title' => 'About us', 'post_content' => '<p>We write about clusters. See the <a href="' . $home . '/first-release/">first release</a>.</p>', 'menu_order' => 1]);
    $harbor = $make_image('harbor.png', [20, 80, 160], 'Harbor', $about, 'A blue harbor');
    $harbor_url = wp_get_attachment_url($harbor);
    $harbor_medium = wp_get_attachment_image_src($harbor, 'medium')[0];
    wp_update_post(['ID' => $about, 'post_content' => get_post($about)->post_content . "\n<p><img src=\"$harbor_medium\" alt=\"A blue harbor\" class=\"wp-image-$harbor size-medium\" /></p>"]);
    $team = $make_page(['post_name' => 'team', 'post_title' => 'Team', 'post_parent' => $about, 'menu_order' => 2, 'post_content' => '<p>Part of <a href="' . $home . '/about/">About us</a>.</p>']);

    $first = $make_post([
        'post_name' => 'first-release', 'post_title' => 'First release', 'post_author' => $author_id,
        'post_date' => '2023-05-01 10:00:00', 'post_date_gmt' => '2023-05-01 10:00:00',
        'post_excerpt' => 'The first release, announced on ' . $home . '/first-release/',
        'post_content' => '<p>Read <a href="' . $home . '/about/">about us</a> and <a href="' . $home . '/?p=1">an old link</a>.</p>',
        'post_category' => [$releases], 'tags_input' => ['wordpress', 'kubernetes'],
    ]);
    $sunrise = $make_image('sunrise.png', [200, 90, 20], 'Sunrise', $first, 'An orange sunrise');
    $sunrise_url = wp_get_attachment_url($sunrise);
    wp_update_post(['ID' => $first, 'post_content' => get_post($first)->post_content . "\n<p><a href=\"$sunrise_url\"><img src=\"$sunrise_url\" alt=\"An orange sunrise\" class=\"wp-image-$sunrise\" /></a></p>"]);
    set_post_thumbnail($first, $sunrise);

    $guide = $make_post([
        'post_name' => 'cloning-guide', 'post_title' => 'A guide to cloning',
        'post_date' => '2024-02-10 08:30:00', 'post_date_gmt' => '2024-02-10 08:30:00',
        'post_excerpt' => 'How to copy a site.',
        'post_content' => "<!-- wp:paragraph -->\n<p>Start from the <a href=\"$home/first-release/\">first release</a>; the <a href=\"$home/about/team/\">team</a> helps.</p>\n<!-- /wp:paragraph -->\n\n"
            . "<!-- wp:image {\"id\":$harbor,\"sizeSlug\":\"medium\"} -->\n<figure class=\"wp-block-image size-medium\"><img src=\"$harbor_medium\" alt=\"A blue harbor\" class=\"wp-image-$harbor\"/></figure>\n<!-- /wp:image -->",
        'post_category' => [$guides, $news], 'tags_input' => ['cloning', 'wordpress'],
    ]);
    $draft = $make_post([
        'post_name' => 'upcoming', 'post_title' => 'Upcoming work', 'post_status' => 'draft',
        'post_content' => '<p>Not published yet; links to <a href="' . $home . '/cloning-guide/">the guide</a>.</p>',
        'post_category' => [$news],
    ]);
    $out['ids'] = compact('news', 'releases', 'guides', 'tags', 'about', 'team', 'harbor', 'sunrise', 'first', 'guide', 'draft');
    $out['urls'] = ['harbor' => $harbor_url, 'harbor_medium' => $harbor_medium, 'sunrise' => $sunrise_url];
}

echo json_encode($out), "\n";
