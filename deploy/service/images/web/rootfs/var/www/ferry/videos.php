<?php
declare(strict_types=1);
require __DIR__ . '/lib.php';
ferry_session();
$user = ferry_user();
session_write_close();
if ($user === null) {
    header('Location: /login.php', true, 302);
    exit;
}
$names = [];
foreach (glob(ferry_media_dir() . '/*.mp4') ?: [] as $path) {
    $names[] = basename($path);
}
sort($names);
$items = '';
foreach ($names as $n) {
    $e = htmlspecialchars($n);
    $items .= '<li><a class="video" href="/player.php?v=' . rawurlencode($n) . "\">$e</a></li>\n";
}
ferry_page('Videos', '<p id="user">Logged in as ' . htmlspecialchars($user)
    . ' — <a href="/logout.php">log out</a></p><ul id="videos">' . $items . '</ul>');
