<?php
// GET writer=W → {"writer":"W","rows":[{"id":ID,"seq":N},...]} in id order.
declare(strict_types=1);
require __DIR__ . '/../lib.php';
$writer = (string)($_GET['writer'] ?? '');
if ($writer === '') {
    ferry_json(400, ['error' => 'writer is required']);
    exit;
}
try {
    $db = ferry_db();
    $stmt = $db->prepare('SELECT id, seq FROM writes WHERE writer = ? ORDER BY id');
    $stmt->bind_param('s', $writer);
    $stmt->execute();
    $stmt->bind_result($id, $seq);
    $rows = [];
    while ($stmt->fetch()) {
        $rows[] = ['id' => (int)$id, 'seq' => (int)$seq];
    }
    $stmt->close();
    $db->close();
} catch (Throwable $e) {
    ferry_json(503, ['error' => 'database: ' . $e->getMessage()]);
    exit;
}
ferry_json(200, ['writer' => $writer, 'rows' => $rows]);
