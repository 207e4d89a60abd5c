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
$name = basename((string)($_GET['v'] ?? ''));
if ($name === '' || !is_file(ferry_media_dir() . '/' . $name)) {
    http_response_code(404);
    ferry_page('No such video', '<p id="error">No video named ' . htmlspecialchars($name) . '.</p>');
    exit;
}
$src = '/media/' . rawurlencode($name);
ferry_page('Player: ' . $name, '<p id="user">Logged in as ' . htmlspecialchars($user) . '</p>'
    . '<video id="player" src="' . htmlspecialchars($src) . '" controls muted preload="auto" width="640"></video>'
    . '<p><a href="/videos.php">All videos</a></p>');
