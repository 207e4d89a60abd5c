<?php
// Shared by every page of the reference service: database connection and session.
declare(strict_types=1);

mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);

function ferry_db(): mysqli {
    $host = getenv('FERRY_DB_HOST') ?: '10.89.0.2';
    $db = new mysqli($host, 'ferry', 'ferry', 'ferry', 3306);
    $db->set_charset('utf8mb4');
    return $db;
}

function ferry_session(): void {
    // session.save_path is set by Apache (ferry.conf) to the data directory, so the
    // sessions move with the service.
    session_name('FERRYSESSID');
    session_start();
}

function ferry_user(): ?string {
    return isset($_SESSION['user']) && is_string($_SESSION['user']) ? $_SESSION['user'] : null;
}

function ferry_media_dir(): string {
    return (getenv('FERRY_DATA') ?: '/srv/ferry/ref') . '/www/media';
}

function ferry_json(int $code, array $body): void {
    http_response_code($code);
    header('Content-Type: application/json');
    header('Cache-Control: no-store');
    echo json_encode($body), "\n";
}

function ferry_page(string $title, string $body): void {
    header('Content-Type: text/html; charset=utf-8');
    header('Cache-Control: no-store');
    $t = htmlspecialchars($title);
    echo "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>$t</title></head>\n<body>\n<h1>$t</h1>\n$body\n</body></html>\n";
}
