<?php
// GET: the login form. POST user+password: checked with password_verify against the
// users table; success → 302 /videos.php with the session cookie, failure → 401.
declare(strict_types=1);
require __DIR__ . '/lib.php';
ferry_session();

$form = '<form method="post" action="/login.php">'
    . '<label>User <input id="user" name="user" autocomplete="username"></label> '
    . '<label>Password <input id="password" name="password" type="password" autocomplete="current-password"></label> '
    . '<button id="login" type="submit">Log in</button></form>';

if ($_SERVER['REQUEST_METHOD'] !== 'POST') {
    if (ferry_user() !== null) {
        header('Location: /videos.php', true, 302);
        exit;
    }
    ferry_page('Log in', $form);
    exit;
}

$user = (string)($_POST['user'] ?? '');
$password = (string)($_POST['password'] ?? '');
$hash = null;
try {
    $db = ferry_db();
    $stmt = $db->prepare('SELECT password_hash FROM users WHERE username = ?');
    $stmt->bind_param('s', $user);
    $stmt->execute();
    $stmt->bind_result($hash);
    if (!$stmt->fetch()) {
        $hash = null;
    }
    $stmt->close();
    $db->close();
} catch (mysqli_sql_exception $e) {
    http_response_code(503);
    ferry_page('Database unavailable', '<p id="error">The user database did not answer.</p>');
    exit;
}
if ($hash === null || !password_verify($password, $hash)) {
    http_response_code(401);
    ferry_page('Log in', '<p id="error">Wrong user name or password.</p>' . $form);
    exit;
}
session_regenerate_id(true);
$_SESSION['user'] = $user;
$_SESSION['since'] = time();
header('Location: /videos.php', true, 302);
