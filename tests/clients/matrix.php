<?php
// The client matrix's PHP client, php-memcached (Debian, over libmemcached): the checks of README.md.
// Usage: php matrix.php text|binary PORT   Prints `ok NAME` / `FAIL NAME: why` per check; exits 1 when any failed.
$binary = $argv[1] === 'binary';
$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, $binary);
$m->setOption(Memcached::OPT_COMPRESSION, false);
$m->addServer('127.0.0.1', (int)$argv[2]);
$failed = [];

function check($name, $fn) {
    global $failed;
    try {
        $fn();
        echo "ok $name\n";
    } catch (Throwable $e) {
        $failed[] = $name;
        echo "FAIL $name: " . $e->getMessage() . "\n";
    }
}
function eq($got, $want, $what) {
    if ($got !== $want) {
        throw new Exception("$what: got " . var_export($got, true) . ", want " . var_export($want, true));
    }
}

$m->flush();
check('set_get', function () use ($m) {
    eq($m->set('mx:k', 'hello'), true, 'set');
    eq($m->get('mx:k'), 'hello', 'get');
});
check('get_multi', function () use ($m) {
    $want = [];
    for ($i = 0; $i < 40; $i++) { $want["mx:m$i"] = "vmx:m$i"; }
    foreach ($want as $k => $v) { $m->set($k, $v); }
    $got = $m->getMulti(array_keys($want));
    ksort($got); ksort($want);
    eq($got, $want, 'getMulti');
});
check('cas_unique_across_keys', function () use ($m) {
    // getMulti with CAS: what php-memcached users rely on uniques being unique across keys for.
    $m->set('mx:a', '1');
    $m->set('mx:b', '1');
    $got = $m->getMulti(['mx:a', 'mx:b'], Memcached::GET_EXTENDED);
    if (!isset($got['mx:a'], $got['mx:b'])) { throw new Exception('getMulti missed a key: ' . var_export($got, true)); }
    if ($got['mx:a']['cas'] === $got['mx:b']['cas']) {
        throw new Exception('the two keys share the CAS unique ' . $got['mx:a']['cas']);
    }
});
check('cas_round_trip', function () use ($m) {
    $m->set('mx:c', 'old');
    $u = $m->get('mx:c', null, Memcached::GET_EXTENDED)['cas'];
    eq($m->cas($u, 'mx:c', 'new'), true, 'cas with the current unique');
    eq($m->cas($u, 'mx:c', 'again'), false, 'cas with a stale unique');
    eq($m->get('mx:c'), 'new', 'value after cas');
});
check('counter', function () use ($m, $binary) {
    if ($binary) {
        // The binary Increment with an initial value (what failed through a proxy).
        eq($m->increment('mx:n', 5, 10), 10, 'increment of a missing key with an initial value');
    } else {
        $m->set('mx:n', '10');
    }
    eq($m->increment('mx:n', 5), 15, 'increment');
    eq($m->decrement('mx:n', 3), 12, 'decrement');
});
check('add_delete', function () use ($m) {
    $m->set('mx:d', 'x');
    eq($m->add('mx:d', 'y'), false, 'add of an existing key');
    eq($m->delete('mx:d'), true, 'delete');
    eq($m->get('mx:d'), false, 'get after delete');
    eq($m->add('mx:d', 'z'), true, 'add after delete');
});
check('flush_all', function () use ($m) {
    $keys = [];
    for ($i = 0; $i < 40; $i++) { $keys[] = "mx:f$i"; $m->set("mx:f$i", 'x'); }
    eq($m->flush(), true, 'flush');
    eq($m->getMulti($keys), [], 'keys left after flush_all');
});
check('version', function () use ($m) {
    $v = array_values($m->getVersion())[0];
    if (!preg_match('/^\d/', (string)$v)) { throw new Exception("version " . var_export($v, true) . " does not start with a digit"); }
});
exit(count($failed) ? 1 : 0);
