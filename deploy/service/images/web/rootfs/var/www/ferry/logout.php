<?php
declare(strict_types=1);
require __DIR__ . '/lib.php';
ferry_session();
$_SESSION = [];
session_destroy();
header('Location: /login.php', true, 302);
