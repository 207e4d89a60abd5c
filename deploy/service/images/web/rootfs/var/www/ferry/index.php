<?php
declare(strict_types=1);
require __DIR__ . '/lib.php';
ferry_session();
header('Location: ' . (ferry_user() === null ? '/login.php' : '/videos.php'), true, 302);
