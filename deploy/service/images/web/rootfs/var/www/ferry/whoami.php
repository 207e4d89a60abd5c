<?php
// {"logged_in": true|false, "user": "user1"|null}
declare(strict_types=1);
require __DIR__ . '/lib.php';
ferry_session();
$user = ferry_user();
session_write_close();
ferry_json(200, ['logged_in' => $user !== null, 'user' => $user]);
