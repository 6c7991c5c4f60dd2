// The client matrix's Node.js client, memjs (npm, binary protocol): the checks of README.md.
// Usage: NODE_PATH=DIR/node_modules node matrix.js PORT   Prints `ok NAME` / `FAIL NAME: why`; exits 1 when any failed.
const memjs = require('memjs');

const mc = memjs.Client.create(`127.0.0.1:${process.argv[2]}`, { timeout: 5, retries: 0, logger: { log() {} } });
let failed = 0;

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e && e.message ? e.message : e}`);
  }
}
function eq(got, want, what) {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}
const str = (r) => (r && r.value ? r.value.toString() : null);

(async () => {
  await mc.flush();
  await check('set_get', async () => {
    eq(await mc.set('mx:k', 'hello', { expires: 0 }), true, 'set');
    eq(str(await mc.get('mx:k')), 'hello', 'get');
  });
  await check('counter', async () => {
    // The binary Increment with an initial value (what failed through a proxy).
    eq((await mc.increment('mx:n', 5, { initial: 10 })).value, 10, 'increment of a missing key with an initial value');
    eq((await mc.increment('mx:n', 5, {})).value, 15, 'increment');
    eq((await mc.decrement('mx:n', 3, {})).value, 12, 'decrement');
  });
  await check('add_delete', async () => {
    await mc.set('mx:d', 'x', { expires: 0 });
    let added = true;
    try { added = await mc.add('mx:d', 'y', { expires: 0 }); } catch (e) { added = false; }
    eq(added, false, 'add of an existing key');
    eq(await mc.delete('mx:d'), true, 'delete');
    eq(str(await mc.get('mx:d')), null, 'get after delete');
    eq(await mc.add('mx:d', 'z', { expires: 0 }), true, 'add after delete');
  });
  await check('flush_all', async () => {
    const keys = Array.from({ length: 40 }, (_, i) => `mx:f${i}`);
    for (const k of keys) await mc.set(k, 'x', { expires: 0 });
    await mc.flush();
    const left = [];
    for (const k of keys) if (str(await mc.get(k)) !== null) left.push(k);
    eq(left, [], 'keys left after flush_all');
  });
  await check('version', async () => {
    const v = await new Promise((resolve, reject) =>
      mc.stats((err, server, stats) => (err ? reject(err) : resolve(stats && stats.version))));
    if (!/^\d/.test(v || '')) throw new Error(`version ${v} does not start with a digit`);
  });
  mc.close();
  process.exit(failed ? 1 : 0);
})();
