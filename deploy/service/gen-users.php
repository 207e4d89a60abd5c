<?php
// Prints SQL inserting user1..userN with bcrypt hashes of pass1..passN into `users_seed`.
// Cost 4 (the minimum) keeps seeding 10000 users to a few seconds; password_verify
// works the same for any cost.
declare(strict_types=1);
$n = (int)($argv[1] ?? 0);
if ($n < 1) {
    fwrite(STDERR, "usage: php gen-users.php N\n");
    exit(2);
}
$batch = [];
for ($i = 1; $i <= $n; $i++) {
    $hash = password_hash("pass$i", PASSWORD_BCRYPT, ['cost' => 4]);
    $batch[] = "('user$i','$hash')";
    if (count($batch) === 500 || $i === $n) {
        echo 'INSERT INTO users_seed (username, password_hash) VALUES ', implode(',', $batch), ";\n";
        $batch = [];
    }
}
