<?php
// 200 "ok" when PHP can query the database, else 503.
declare(strict_types=1);
require __DIR__ . '/lib.php';
header('Content-Type: text/plain');
header('Cache-Control: no-store');
try {
    $db = ferry_db();
    $db->query('SELECT COUNT(*) FROM users LIMIT 1')->fetch_row();
    $db->close();
    echo "ok";
} catch (Throwable $e) {
    http_response_code(503);
    echo "database unavailable";
}
