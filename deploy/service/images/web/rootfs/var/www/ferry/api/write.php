<?php
// POST writer, seq → inserts (writer, seq) into `writes`; answers only after COMMIT.
declare(strict_types=1);
require __DIR__ . '/../lib.php';
if ($_SERVER['REQUEST_METHOD'] !== 'POST') {
    ferry_json(405, ['ok' => false, 'error' => 'POST writer and seq']);
    exit;
}
$writer = (string)($_POST['writer'] ?? '');
$seq = filter_var($_POST['seq'] ?? null, FILTER_VALIDATE_INT);
if ($writer === '' || strlen($writer) > 64 || $seq === false) {
    ferry_json(400, ['ok' => false, 'error' => 'writer (1..64 chars) and integer seq are required']);
    exit;
}
try {
    $db = ferry_db();
    $db->begin_transaction();
    $stmt = $db->prepare('INSERT INTO writes (writer, seq) VALUES (?, ?)');
    $stmt->bind_param('si', $writer, $seq);
    $stmt->execute();
    $id = (int)$db->insert_id;
    $stmt->close();
    $db->commit();
    $db->close();
} catch (Throwable $e) {
    ferry_json(503, ['ok' => false, 'error' => 'database: ' . $e->getMessage()]);
    exit;
}
ferry_json(200, ['ok' => true, 'writer' => $writer, 'seq' => $seq, 'id' => $id]);
